"""A converted model written with its metadata, and the written file opened the way its users will open it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.export.formats import ExportFormat
from edgetl.export.metadata import attach_to_onnx, attach_to_tflite
from edgetl.export.tflite import OpReport, tflite_op_report
from edgetl.files import atomic_write
from edgetl.runtime.engine import open_engine
from edgetl.runtime.metadata import ModelMetadata


def write_converted(
    export_format: ExportFormat, converted, metadata: ModelMetadata, destination: Path
) -> tuple[int, str]:
    """Write the converted model with its metadata; returns size and sha256 of what was written."""
    metadata = replace(metadata, model_format=export_format.name)
    if export_format.kind == "savedmodel":
        from edgetl.export.savedmodel import directory_digest, write_savedmodel

        write_savedmodel(converted, destination, metadata)
        return directory_digest(destination)
    if export_format.kind == "onnx":
        attach_to_onnx(converted, metadata)
        payload = converted.SerializeToString()
    else:
        payload = attach_to_tflite(converted, metadata)
    atomic_write(destination, payload)
    return len(payload), hashlib.sha256(payload).hexdigest()


@dataclass
class Loaded:
    predict: Callable[[np.ndarray], np.ndarray]
    input_dtype: str
    output_dtype: str
    ops: OpReport | None


def load_written(export_format: ExportFormat, destination: Path) -> Loaded:
    """Open the written file the way its users will: LiteRT/onnxruntime engines, TensorFlow for SavedModel."""
    if export_format.kind == "savedmodel":
        from edgetl.export.savedmodel import savedmodel_predictor

        return Loaded(savedmodel_predictor(destination), "float32", "float32", None)
    engine = open_engine(destination)
    if export_format.kind == "onnx":
        import onnx

        from edgetl.export.onnx import onnx_op_report

        ops = onnx_op_report(onnx.load(str(destination)))
    else:
        ops = tflite_op_report(destination)
    return Loaded(engine.predict, engine.input_dtype, engine.output_dtype, ops)
