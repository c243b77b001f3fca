"""`edgetl export`: convert a run's Keras model to each format, attach metadata, write atomically, verify."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.data.pipeline import decode_subset
from edgetl.errors import DataError, EdgetlError
from edgetl.export.logs import output_to
from edgetl.export.metadata import attach_to_onnx, attach_to_tflite
from edgetl.export.verify import compare, predict_in_batches
from edgetl.run import RunDir, atomic_write
from edgetl.runtime.engine import open_engine
from edgetl.runtime.metadata import ModelMetadata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportFormat:
    name: str
    filename: str
    convert: Callable  # (keras model, calibration pixels) -> bytes or an ONNX ModelProto
    min_agreement: float  # default verification gate: float formats must match Keras almost everywhere


def _tflite_float32(model, calibration):
    from edgetl.export.tflite import convert_float32

    return convert_float32(model, calibration)


def _tflite_int8(model, calibration):
    from edgetl.export.tflite import convert_int8

    return convert_int8(model, calibration)


def _onnx(model, calibration):
    from edgetl.export.onnx import convert_onnx

    return convert_onnx(model, calibration)


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("tflite-float32", "model_float32.tflite", _tflite_float32, 0.99),
        ExportFormat("tflite-int8", "model_int8.tflite", _tflite_int8, 0.90),
        ExportFormat("onnx", "model.onnx", _onnx, 0.99),
    )
}


@dataclass(frozen=True)
class ExportRecord:
    format: str
    path: str
    size_bytes: int
    sha256: str
    input_dtype: str
    output_dtype: str
    images: int
    agreement: float
    top1: float
    keras_top1: float
    max_probability_diff: float
    flipped_files: list[str]
    min_agreement: float
    passed: bool


def calibration_sample(run: RunDir, image_size: int, samples: int) -> np.ndarray:
    """Up to `samples` training images; the split interleaves classes, so a prefix is stratified."""
    split = run.read_split()
    subset = decode_subset(split.train[:samples], image_size)
    if len(subset.labels) == 0:
        raise DataError(f"{split.root}: no training image could be decoded for int8 calibration")
    return subset.pixels.astype(np.float32)


def _serialise(format_name: str, converted, metadata: ModelMetadata) -> bytes:
    tagged = replace(metadata, model_format=format_name)
    if format_name == "onnx":
        attach_to_onnx(converted, tagged)
        return converted.SerializeToString()
    return attach_to_tflite(converted, tagged)


def export_run(
    run_path: Path,
    formats: list[str],
    calibration_samples: int = 200,
    min_agreement: float | None = None,
) -> list[ExportRecord]:
    run = RunDir(Path(run_path))
    run.require_trained()
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise EdgetlError(f"unknown export format {unknown[0]}: choose from {', '.join(FORMATS)}")
    metadata = run.read_metadata()
    split = run.read_split()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model = run.load_model()
    image_size = metadata.input_size[0]
    test = decode_subset(split.test, image_size)
    if len(test.labels) == 0:
        raise DataError(f"{split.root}: no test image could be decoded; cannot verify the exports")
    test_pixels = test.pixels.astype(np.float32)
    keras_probabilities = predict_in_batches(lambda x: model.predict(x, verbose=0), test_pixels)
    calibration = calibration_sample(run, image_size, calibration_samples) if "tflite-int8" in formats else None

    records = {record["format"]: record for record in run.read_exports()}
    results = []
    log_path = run.path / "logs" / "export.log"
    for name in formats:
        export_format = FORMATS[name]
        log.info("converting %s", name)
        try:
            with output_to(log_path):
                converted = export_format.convert(model, calibration)
        except Exception as error:  # converters raise anything from ConverterError to ValueError
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise EdgetlError(f"{name} export failed: {reason} (full log: {log_path})") from None
        payload = _serialise(name, converted, metadata)
        destination = run.exports_dir / export_format.filename
        atomic_write(destination, payload)
        engine = open_engine(destination)
        probabilities = predict_in_batches(engine.predict, test.pixels)
        fidelity = compare(probabilities, keras_probabilities, test.labels)
        gate = export_format.min_agreement if min_agreement is None else min_agreement
        record = ExportRecord(
            format=name,
            path=str(destination.relative_to(run.path)),
            size_bytes=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            input_dtype=engine.input_dtype,
            output_dtype=engine.output_dtype,
            images=fidelity.images,
            agreement=fidelity.agreement,
            top1=fidelity.top1,
            keras_top1=fidelity.keras_top1,
            max_probability_diff=fidelity.max_probability_diff,
            flipped_files=[str(test.examples[i].path) for i in fidelity.flipped],
            min_agreement=gate,
            passed=fidelity.agreement >= gate,
        )
        records[name] = asdict(record)
        # The index is rewritten after every file, so an interrupted export keeps what was done.
        atomic_write(run.exports_index, json.dumps(list(records.values()), indent=1))
        results.append(record)
    return results
