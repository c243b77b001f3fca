"""ONNX files on onnxruntime, on the CUDA provider when onnxruntime-gpu has one."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from edgetl.errors import MissingExtraError, ModelFileError
from edgetl.runtime.contract import check_onnx_session, check_scores, one_line
from edgetl.runtime.engine import Engine
from edgetl.runtime.foreign import ModelFlags, TensorShapes, describe_foreign_model, refuse_flags_for_edgetl_file
from edgetl.runtime.metadata import METADATA_KEY, ModelMetadata

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def session_options(threads: int | None = None):
    """onnxruntime's default session options, as any other program opens a file, with only what changes no output:
    its log quiet, and the thread count (onnxruntime splits the work of an op between threads, never the sum of
    one output, so the figures are the same for any count). An int8 file's figures hold for every program because
    edgetl sets nothing that changes them: what a CPU needs is in the file (export --target), not in the session."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return options


class OnnxEngine(Engine):
    def __init__(self, path: Path, threads: int | None = None, flags: ModelFlags | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise MissingExtraError("onnxruntime", "device", "running an .onnx file") from None
        options = session_options(threads)
        available = onnxruntime.get_available_providers()
        providers = [p for p in PREFERRED_PROVIDERS if p in available]
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        load_errors = (state.Fail, state.InvalidArgument, state.InvalidProtobuf, state.InvalidGraph, state.NoSuchFile)
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except load_errors as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelFileError(f"{path}: not a loadable ONNX model ({first_line})") from None
        check_onnx_session(path, self.session)
        model_input, model_output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name = model_input.name
        self.output_name = model_output.name
        self.channels_first = False
        try:
            custom = self.session.get_modelmeta().custom_metadata_map
        except UnicodeDecodeError as error:
            raise ModelFileError(f"{path}: its metadata is damaged (not UTF-8 text: {error.reason})") from None
        flags = flags or ModelFlags()
        if METADATA_KEY in custom:
            refuse_flags_for_edgetl_file(path, flags)
            metadata = ModelMetadata.from_json(custom[METADATA_KEY], str(path))
            metadata.check_model(str(path), model_input.shape, model_output.shape)
        else:
            metadata = self._foreign_metadata(path, model_input, model_output, flags)
        super().__init__(path, metadata)
        self.runtime = f"onnxruntime {onnxruntime.__version__}"
        self.threads = threads
        self.provider = self.session.get_providers()[0]
        self.processor = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"

    def _foreign_metadata(self, path: Path, model_input, model_output, flags: ModelFlags) -> ModelMetadata:
        """Another tool's ONNX classifier: float input, NHWC or NCHW (as PyTorch exports), labels and
        normalisation from the flags."""
        shape, outputs = list(model_input.shape), list(model_output.shape)
        fixed = len(shape) == 4 and all(isinstance(d, int) for d in shape[1:])
        if not fixed or 3 not in (shape[1], shape[3]) or len(outputs) != 2 or not isinstance(outputs[1], int):
            raise ModelFileError(
                f"{path}: takes input {shape} and gives output {outputs}; edgetl runs image classifiers "
                f"of a fixed size, (batch, height, width, 3) or (batch, 3, height, width) -> (batch, classes)"
            )
        self.channels_first = shape[1] == 3 and shape[3] != 3
        height, width = (shape[2], shape[3]) if self.channels_first else (shape[1], shape[2])
        if model_input.type != "tensor(float)":
            raise ModelFileError(f"{path}: takes {model_input.type} input; edgetl feeds float pixels to ONNX models")
        return describe_foreign_model(path, TensorShapes(height, width, outputs[1], False), flags)

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        values = self.normalized(pixels).astype(np.float32, copy=False)
        if self.channels_first:
            values = np.ascontiguousarray(values.transpose(0, 3, 1, 2))
        try:
            scores = self.session.run([self.output_name], {self.input_name: values})[0].astype(np.float32, copy=False)
        except _run_errors() as error:  # a graph that refuses what the file declares
            raise ModelFileError(f"{self.path}: the model fails to run ({one_line(error)})") from None
        return check_scores(self.path, scores, len(pixels), len(self.labels))


@functools.cache
def _run_errors() -> tuple[type[Exception], ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return (state.Fail, state.InvalidArgument, state.RuntimeException, state.InvalidGraph)


def open_onnx(path: Path, threads: int | None = None, flags: ModelFlags | None = None) -> OnnxEngine:
    import contextlib
    import io

    # onnxruntime prints ("EP Error ... Falling back") when a provider fails to load a file: that goes to the log,
    # not to the user's terminal, where the one line that says what is wrong is edgetl's.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            return OnnxEngine(path, threads=threads, flags=flags)
    except UnicodeDecodeError as error:  # onnxruntime quotes a damaged file's names in its error, undecodable
        reason = f"its names are not UTF-8 text: {error.reason}"
        raise ModelFileError(f"{path}: not a loadable ONNX model ({reason})") from None
    finally:
        if printed.getvalue().strip():
            log.info("onnxruntime on %s: %s", path, " ".join(printed.getvalue().split()))
