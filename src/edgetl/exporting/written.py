"""A converted model written with its metadata, and the written file opened the way its users will open it.

One entry per kind of file (`FILE_KINDS`, named by `ExportFormat.kind`): how it is written and how it is opened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.exporting.formats import ExportFormat
from edgetl.exporting.metadata import attach_to_onnx, attach_to_tflite
from edgetl.exporting.tflite import OpReport, tflite_op_report
from edgetl.exporting.verify import RUNTIME_BATCH
from edgetl.files import atomic_write
from edgetl.runtime.engine import open_engine
from edgetl.runtime.metadata import ModelMetadata


@dataclass
class Loaded:
    predict: Callable[[np.ndarray], np.ndarray] | None  # None once verified: the engine is let go
    input_dtype: str
    output_dtype: str
    ops: OpReport | None
    runtime: str = ""  # what ran it in its default configuration, e.g. "onnxruntime 1.20.1"


def _written_bytes(payload: bytes, destination: Path) -> tuple[int, str]:
    atomic_write(destination, payload)
    return len(payload), hashlib.sha256(payload).hexdigest()


def _write_tflite(converted: bytes, metadata: ModelMetadata, destination: Path) -> tuple[int, str]:
    return _written_bytes(attach_to_tflite(converted, metadata), destination)


def _write_onnx(converted, metadata: ModelMetadata, destination: Path) -> tuple[int, str]:
    attach_to_onnx(converted, metadata)
    return _written_bytes(converted.SerializeToString(), destination)


def _write_savedmodel(converted, metadata: ModelMetadata, destination: Path) -> tuple[int, str]:
    from edgetl.exporting.savedmodel import directory_digest, write_savedmodel

    write_savedmodel(converted, destination, metadata)
    return directory_digest(destination)


def _on_engine(destination: Path, ops: OpReport | None) -> Loaded:
    """The file on the engine `edgetl classify` would pick (LiteRT, onnxruntime)."""
    engine = open_engine(destination)
    return Loaded(engine.predict, engine.input_dtype, engine.output_dtype, ops, engine.runtime)


def _load_onnx(destination: Path) -> Loaded:
    import onnx

    from edgetl.exporting.onnx import onnx_op_report

    return _on_engine(destination, onnx_op_report(onnx.load(str(destination))))


def _load_savedmodel(destination: Path) -> Loaded:
    from importlib.metadata import version

    from edgetl.exporting.savedmodel import savedmodel_predictor

    return Loaded(savedmodel_predictor(destination), "float32", "float32", None, f"tensorflow {version('tensorflow')}")


@dataclass(frozen=True)
class FileKind:
    write: Callable[[object, ModelMetadata, Path], tuple[int, str]]  # -> size and sha256 of what was written
    load: Callable[[Path], Loaded]
    # Images its verification runs a call at most (within verify.RUNTIME_BATCH_BYTES): more than one only where
    # the runtime gives an image the same outputs whatever the batch, so the figures are those of one image a call.
    # onnxruntime does (a test holds it on a float and an int8 file), and a few images a call run faster (figures:
    # docs/benchmarks.md, export cost's eleventh round); LiteRT's outputs move in their last bit with the batch.
    batch: int = RUNTIME_BATCH


FILE_KINDS: dict[str, FileKind] = {
    "tflite": FileKind(_write_tflite, lambda destination: _on_engine(destination, tflite_op_report(destination))),
    "onnx": FileKind(_write_onnx, _load_onnx, batch=4),
    "savedmodel": FileKind(_write_savedmodel, _load_savedmodel),
}


def write_converted(
    export_format: ExportFormat, converted, metadata: ModelMetadata, destination: Path
) -> tuple[int, str]:
    """Write the converted model with its metadata; returns size and sha256 of what was written."""
    metadata = replace(metadata, model_format=export_format.name)
    return FILE_KINDS[export_format.kind].write(converted, metadata, destination)


def load_written(export_format: ExportFormat, destination: Path) -> Loaded:
    """Open the written file the way its users will: LiteRT/onnxruntime engines, TensorFlow for SavedModel."""
    return FILE_KINDS[export_format.kind].load(destination)
