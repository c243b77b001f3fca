"""edgetl: transfer learning for image classifiers, exported and verified for edge devices.

The Python API is plain functions, `edgetl.train`, `edgetl.resume`, `edgetl.export`, `edgetl.bench`,
`edgetl.report`, `edgetl.tune` and `edgetl.sample_data` (edgetl/api.py), and `edgetl.Classifier` for on-device code
(edgetl/runtime/classifier.py). `import edgetl` (and the CLI) imports no TensorFlow or NumPy: each function
imports what it needs when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgetl.api import bench, export, report, resume, sample_data, train, tune
from edgetl.errors import EdgetlError

if TYPE_CHECKING:
    from edgetl.runtime.classifier import Classifier

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "EdgetlError",
    "__version__",
    "bench",
    "export",
    "report",
    "resume",
    "sample_data",
    "train",
    "tune",
]


def __getattr__(name: str):
    # Classifier is imported when first asked for: it brings NumPy, which `edgetl --help` and `import edgetl` skip.
    if name == "Classifier":
        from edgetl.runtime.classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'edgetl' has no attribute {name!r}")
