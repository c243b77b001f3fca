"""TFLite files on LiteRT (ai-edge-litert), else tflite-runtime, else TensorFlow's own interpreter.

The first two are what a board has; TensorFlow is the last resort on a workstation that has nothing else,
and is only imported when neither light runtime can be.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from edgetl.errors import EdgetlError, MissingExtraError, ModelFileError
from edgetl.runtime.contract import check_model_contract, check_scores, one_line, tflite_specs
from edgetl.runtime.engine import Engine, is_available
from edgetl.runtime.foreign import (
    ModelFlags,
    TensorShapes,
    describe_foreign_model,
    metadata_normalization,
    refuse_flags_for_edgetl_file,
)
from edgetl.runtime.metadata import ModelMetadata, read_tflite_metadata
from edgetl.runtime.quiet import native_stderr_captured
from edgetl.runtime.runtimes import runtimes_for
from edgetl.runtime.tflite_metadata import read_standard_metadata

TFLITE_RUNTIMES = runtimes_for(".tflite")


def distribution_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def import_interpreter(name: str):
    """The Interpreter class of one runtime, or the ImportError that says why it cannot be had."""
    runtime = TFLITE_RUNTIMES[name]
    if not is_available(runtime.package):
        raise ImportError(f"{runtime.distribution} is not installed")
    return importlib.import_module(runtime.module).Interpreter


def _interpreter_class(runtime: str | None):
    if runtime is not None and runtime not in TFLITE_RUNTIMES:
        raise EdgetlError(f"--runtime {runtime}: not a TFLite runtime; choose one of {', '.join(TFLITE_RUNTIMES)}")
    reasons = []
    for name in [runtime] if runtime else list(TFLITE_RUNTIMES):
        try:
            interpreter = import_interpreter(name)
        except ImportError as error:  # e.g. tflite-runtime 2.14 cannot import under NumPy 2
            reasons.append(f"{name}: {str(error).splitlines()[0]}")
            continue
        distribution = TFLITE_RUNTIMES[name].distribution
        return interpreter, f"{distribution} {distribution_version(distribution)}"
    if runtime:
        distribution = TFLITE_RUNTIMES[runtime].distribution
        raise EdgetlError(
            f"--runtime {runtime} cannot be used here ({reasons[0]}): pip install {distribution}, "
            f"or leave --runtime out (see `edgetl doctor`)"
        )
    raise MissingExtraError("ai-edge-litert", "device", "running a .tflite file")


def quantize_input(values: np.ndarray, detail: dict) -> np.ndarray:
    scales = detail["quantization_parameters"]["scales"]
    zero_points = detail["quantization_parameters"]["zero_points"]
    dtype = detail["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return values.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    quantized = np.round(values.astype(np.float32) / scales[0] + zero_points[0])
    return np.clip(quantized, info.min, info.max).astype(dtype)


def dequantize_output(values: np.ndarray, detail: dict) -> np.ndarray:
    if not np.issubdtype(values.dtype, np.integer):
        return values.astype(np.float32, copy=False)
    scales = detail["quantization_parameters"]["scales"]
    zero_points = detail["quantization_parameters"]["zero_points"]
    return (values.astype(np.float32) - zero_points[0]) * scales[0]


class TFLiteEngine(Engine):
    def __init__(
        self, path: Path, runtime: str | None = None, threads: int | None = None, flags: ModelFlags | None = None
    ):
        own = read_tflite_metadata(path)  # first: it says what is wrong with a file that is no TFLite model
        interpreter_class, runtime_name = _interpreter_class(runtime)
        try:
            with native_stderr_captured():
                interpreter = interpreter_class(model_path=str(path), num_threads=threads)
                # Checked before the tensors are allocated: a declared 100,000 x 100,000 input never is.
                inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
                check_model_contract(path, tflite_specs(inputs), tflite_specs(outputs))
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ModelFileError(f"{path}: not a loadable TFLite model ({one_line(error)})") from None
        self.interpreter = interpreter
        self.input_detail = interpreter.get_input_details()[0]
        self.output_detail = interpreter.get_output_details()[0]
        super().__init__(path, self._metadata(path, own, flags or ModelFlags()))
        self.runtime = runtime_name
        self.threads = threads
        # LiteRT and tflite-runtime apply the XNNPACK delegate to CPU float and int8 kernels by default.
        self.provider = "XNNPACK"
        self._batch = int(self.input_detail["shape"][0])
        # Another tool's quantised file takes uint8 pixels as they are, whatever its input quantisation says.
        self._raw_uint8 = not self.metadata.normalization.inside_model and self.input_dtype == "uint8"

    def _metadata(self, path: Path, own: ModelMetadata | None, flags: ModelFlags) -> ModelMetadata:
        """edgetl's own metadata; else the standard TFLite metadata another tool wrote; else the user's flags."""
        shape = [int(d) for d in self.input_detail["shape"]]
        outputs = [int(d) for d in self.output_detail["shape"]]
        if own is not None:
            refuse_flags_for_edgetl_file(path, flags)
            own.check_model(str(path), shape, outputs)
            return own
        if len(shape) != 4 or shape[3] != 3 or len(outputs) != 2:
            raise ModelFileError(
                f"{path}: takes input {shape} and gives output {outputs}; edgetl runs image classifiers "
                f"(batch, height, width, 3) -> (batch, classes)"
            )
        shapes = TensorShapes(shape[1], shape[2], outputs[1], self.input_dtype == "uint8")
        standard = read_standard_metadata(path)
        if standard is None:
            return describe_foreign_model(path, shapes, flags)
        normalization = metadata_normalization(path, standard.mean, standard.std)
        return describe_foreign_model(
            path, shapes, flags, standard.labels or None, normalization, "standard TFLite metadata"
        )

    @property
    def input_dtype(self) -> str:
        return np.dtype(self.input_detail["dtype"]).name

    @property
    def output_dtype(self) -> str:
        return np.dtype(self.output_detail["dtype"]).name

    def _resize_batch(self, batch: int) -> None:
        if batch == self._batch:
            return
        shape = list(self.input_detail["shape"])
        shape[0] = batch
        self.interpreter.resize_tensor_input(self.input_detail["index"], shape)
        self.interpreter.allocate_tensors()
        self.input_detail = self.interpreter.get_input_details()[0]
        self.output_detail = self.interpreter.get_output_details()[0]
        self._batch = batch

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        self._resize_batch(len(pixels))
        if self._raw_uint8:
            values = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        else:
            values = quantize_input(self.normalized(pixels), self.input_detail)
        try:
            self.interpreter.set_tensor(self.input_detail["index"], values)
            self.interpreter.invoke()
        except (RuntimeError, ValueError) as error:  # a kernel that refuses what the file declares
            raise ModelFileError(f"{self.path}: the model fails to run ({one_line(error)})") from None
        scores = dequantize_output(self.interpreter.get_tensor(self.output_detail["index"]), self.output_detail)
        return check_scores(self.path, scores, len(pixels), len(self.labels))


def open_tflite(
    path: Path, runtime: str | None = None, threads: int | None = None, flags: ModelFlags | None = None
) -> TFLiteEngine:
    return TFLiteEngine(path, runtime=runtime, threads=threads, flags=flags)
