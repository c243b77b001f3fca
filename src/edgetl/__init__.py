"""edgetl: transfer learning for image classifiers, exported and verified for edge devices.

The Python API (edgetl/api.py): `edgetl.train`, `edgetl.export`, `edgetl.bench`, `edgetl.sample_data`, and
`edgetl.Classifier` for on-device code. Each is imported when first asked for, so `import edgetl` (and the CLI)
stays light and imports no TensorFlow.
"""

__version__ = "0.1.0"

# name -> the module that defines it; `train` and `export` are callable subpackages (edgetl/api.py says why).
_API = {
    "train": "edgetl.api",
    "export": "edgetl.api",
    "bench": "edgetl.api",
    "resume": "edgetl.api",
    "sample_data": "edgetl.api",
    "Classifier": "edgetl.runtime.classifier",
}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'edgetl' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_API[name])
    return module if module.__name__ == f"edgetl.{name}" else getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
