"""ONNX files on onnxruntime, on the CUDA provider when onnxruntime-gpu has one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.errors import MissingExtraError, ModelFileError
from edgetl.runtime.engine import Engine
from edgetl.runtime.metadata import METADATA_KEY, ModelMetadata

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxEngine(Engine):
    def __init__(self, path: Path, threads: int | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise MissingExtraError("onnxruntime", "device", "running an .onnx file") from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        available = onnxruntime.get_available_providers()
        providers = [p for p in PREFERRED_PROVIDERS if p in available]
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        load_errors = (state.Fail, state.InvalidArgument, state.InvalidProtobuf, state.InvalidGraph, state.NoSuchFile)
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except load_errors as error:
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelFileError(f"{path}: not a loadable ONNX model ({first_line})") from None
        custom = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in custom:
            raise ModelFileError(f"{path}: carries no edgetl metadata (labels, input size); export it with edgetl")
        super().__init__(path, ModelMetadata.from_json(custom[METADATA_KEY], str(path)))
        self.runtime = f"onnxruntime {onnxruntime.__version__}"
        self.threads = threads
        self.provider = self.session.get_providers()[0]
        self.device = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        feed = {self.input_name: pixels.astype(np.float32, copy=False)}
        return self.session.run([self.output_name], feed)[0].astype(np.float32, copy=False)


def open_onnx(path: Path, threads: int | None = None) -> OnnxEngine:
    return OnnxEngine(path, threads=threads)
