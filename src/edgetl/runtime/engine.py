"""The small interface every runtime backend offers, and the choice of backend for a model file."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

import numpy as np

from edgetl.errors import EdgetlError, ModelFileError
from edgetl.runtime.bounds import check_threads
from edgetl.runtime.foreign import ModelFlags
from edgetl.runtime.metadata import ModelMetadata
from edgetl.runtime.runtimes import runtimes_for


class Engine:
    """A loaded model: raw 0-255 RGB pixels in, class probabilities out."""

    runtime: str = ""  # the package and its version, e.g. "ai-edge-litert 2.3.0"
    provider: str = ""  # the delegate or execution provider that runs it, e.g. "XNNPACK", "CUDAExecutionProvider"
    processor: str = "cpu"  # what computes: "cpu", or "cuda" under onnxruntime's CUDA provider
    threads: int | None = None  # None: the runtime's own default

    def __init__(self, path: Path, metadata: ModelMetadata):
        self.path = path
        self.metadata = metadata

    @property
    def input_size(self) -> tuple[int, int]:
        return self.metadata.input_size

    @property
    def labels(self) -> list[str]:
        return self.metadata.labels

    @property
    def input_dtype(self) -> str:
        return "float32"

    @property
    def output_dtype(self) -> str:
        return "float32"

    def normalized(self, pixels: np.ndarray) -> np.ndarray:
        """Raw pixels as the model's input wants them: as they are for edgetl's files (they normalise inside),
        normalised as its metadata or the user says for another tool's."""
        normalization = self.metadata.normalization
        return pixels if normalization.inside_model else normalization.apply(pixels)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """(n, height, width, 3) pixels, uint8 or float 0-255 -> (n, classes) float32 probabilities."""
        raise NotImplementedError


def is_available(module: str) -> bool:
    """Whether a module could be imported, without importing it (importing a runtime costs start-up time)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def open_engine(
    path: str | Path, runtime: str | None = None, threads: int | None = None, flags: ModelFlags | None = None
) -> Engine:
    """Load a .tflite file with LiteRT (or tflite-runtime) or an .onnx file with onnxruntime; `flags` say what a
    file from another tool does not (labels, normalisation)."""
    flags = flags or ModelFlags()
    check_threads(threads)
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        raise ModelFileError(f"{path}: is a folder, not a model file (give the .tflite or .onnx file inside it)")
    if not stat.S_ISREG(mode):
        raise ModelFileError(f"{path}: not a regular file (a FIFO or device); give a .tflite or .onnx file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from edgetl.runtime.litert import open_tflite

        return open_tflite(path, runtime=runtime, threads=threads, flags=flags)
    if suffix == ".onnx":
        if runtime is not None and runtime not in runtimes_for(".onnx"):
            raise EdgetlError(f"--runtime {runtime}: {path.name} is an ONNX file, which runs on onnxruntime only")
        from edgetl.runtime.onnxrt import open_onnx

        return open_onnx(path, threads=threads, flags=flags)
    raise ModelFileError(f"{path}: unknown model format '{suffix}' (expected .tflite or .onnx)")
