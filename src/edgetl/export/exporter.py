"""`edgetl export`: convert a Keras model to each format, attach metadata, write atomically, verify against Keras.

The format table (`FORMATS`, export/formats.py) drives everything: the file name, the converter, whether it
needs calibration images, how it is written and run, and the default agreement it must reach.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from edgetl.data.pipeline import decode_subset
from edgetl.errors import EdgetlError
from edgetl.export.calibration import check_calibration, stratified_sample
from edgetl.export.formats import (
    FORMATS,
    ConversionInputs,
    ExportFormat,
    ExportOptions,
    check_formats,
    check_options,
    runtimes_for,
)
from edgetl.export.int8 import Int8Recipe, LadderResult, Trial, climb, integer_rungs
from edgetl.export.logs import output_to
from edgetl.export.metadata import attach_to_onnx, attach_to_tflite
from edgetl.export.source import ExportSource, from_run
from edgetl.export.tflite import OpReport, tflite_op_report
from edgetl.export.verify import UNLABELLED, Fidelity, compare, predict_in_batches
from edgetl.files import atomic_write
from edgetl.progress import step
from edgetl.run import record_export
from edgetl.runtime.engine import open_engine

log = logging.getLogger(__name__)


def _names_layer(tensor_name: str, layer: str) -> bool:
    """Whether a converted op's tensor name (`;`-joined names of the fused ops, e.g. `.../block_1_expand_1/...`)
    comes from the Keras layer `layer`."""
    pattern = re.compile(rf"(^|/){re.escape(layer)}(_\d+)?/")
    return any(pattern.search(part) for part in tensor_name.split(";"))


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
    top1: float | None  # None when the verification images have no labels
    keras_top1: float | None
    max_probability_diff: float
    flipped_files: list[str]
    min_agreement: float
    passed: bool
    per_class_accuracy_change: dict[str, float] = field(default_factory=dict)
    operators: int | None = None  # ops in the graph (TFLite) or compute nodes (ONNX); None for SavedModel
    int8_op_share: float | None = None  # share of those that run on integer tensors only
    float_ops: dict[str, int] = field(default_factory=dict)  # op name -> count of ops left in float
    calibration_images: int = 0
    quantizer: str = ""  # who quantised it: "converter", "ai-edge" or "onnxruntime"
    problems: list[str] = field(default_factory=list)  # why it failed besides agreement (e.g. float ops in int8)
    confident_images: int = 0  # verification images on which Keras is confident (top probability >= 0.5)
    confident_agreement: float | None = None  # agreement on those
    mean_probability_diff: float = 0.0
    recipe: str = ""  # int8: the recipe that made the file (see `attempts`)
    float_layers: list[str] = field(default_factory=list)  # int8: layers kept in float by the fallback
    attempts: list[dict] = field(default_factory=list)  # int8: every recipe tried, in order, with its agreement
    runtimes: list[str] = field(default_factory=list)  # the runtimes that load the file as it is (`runtimes_for`)


class CalibrationImages:
    """The source's calibration pool in a seeded, stratified order, decoded as in training only as far as a
    recipe asks (a later rung may want more images than the first); the first sample is checked."""

    def __init__(self, source: ExportSource, samples: int) -> None:
        self.source = source
        pool = source.calibration_pool
        classes = {example.label for example in pool if example.label != UNLABELLED}
        if 0 < samples < len(classes):
            raise EdgetlError(
                f"--calibration-samples {samples}: fewer than the {len(classes)} classes of the calibration images; "
                f"use {len(classes)} or more, so every class is seen"
            )
        self.order = stratified_sample(pool, len(pool), seed=source.seed)
        self.pixels = np.zeros((0, *source.metadata.input_size, 3), np.float32)
        self.decoded = 0  # how many of `order` were tried (some may not decode)
        first = self._decode(samples)
        check_calibration(
            first,
            source.class_names,
            tuple(source.model.input_shape),
            source.metadata.pixel_range,
            f"calibration sample ({samples} requested, of {len(pool)} images)",
        )
        log.info("calibrating on %d images", len(self.pixels))

    @property
    def available(self) -> int:
        return len(self.source.calibration_pool)

    def _decode(self, count: int):
        chosen = self.order[self.decoded : self.decoded + count]
        metadata = self.source.metadata
        subset = decode_subset(chosen, metadata.input_size[0], metadata.resize, "calibration images")
        self.decoded += len(chosen)
        self.pixels = np.concatenate([self.pixels, subset.pixels.astype(np.float32)])
        return subset

    def take(self, count: int) -> np.ndarray:
        if len(self.pixels) < count and self.decoded < len(self.order):
            self._decode(count - len(self.pixels))
        return self.pixels[:count]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # TensorFlow's converter errors start with a location line; the reason is the first line mentioning "error".
    for line in lines:
        if "error" in line.lower() and len(line) > 20:
            return line[:300]
    return lines[0][:300] if lines else type(error).__name__


def _write(export_format: ExportFormat, converted, source: ExportSource, destination: Path) -> tuple[int, str]:
    """Write the converted model with its metadata; returns size and sha256 of what was written."""
    metadata = replace(source.metadata, model_format=export_format.name)
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
class _Loaded:
    predict: Callable[[np.ndarray], np.ndarray]
    input_dtype: str
    output_dtype: str
    ops: OpReport | None


def _load(export_format: ExportFormat, destination: Path) -> _Loaded:
    """Open the written file the way its users will: LiteRT/onnxruntime engines, TensorFlow for SavedModel."""
    if export_format.kind == "savedmodel":
        from edgetl.export.savedmodel import savedmodel_predictor

        return _Loaded(savedmodel_predictor(destination), "float32", "float32", None)
    engine = open_engine(destination)
    if export_format.kind == "onnx":
        import onnx

        from edgetl.export.onnx import onnx_op_report

        ops = onnx_op_report(onnx.load(str(destination)))
    else:
        ops = tflite_op_report(destination)
    return _Loaded(engine.predict, engine.input_dtype, engine.output_dtype, ops)


def _integer_only_problems(export_format: ExportFormat, ops: OpReport | None, options: ExportOptions) -> list[str]:
    """An integer-only format with ops left in float, unless float islands were allowed (`--int8-fallback float`)."""
    if not export_format.integer_only or ops is None or not ops.float_ops or options.int8_fallback == "float":
        return []
    names = ", ".join(f"{op} x{count}" for op, count in ops.float_ops.items())
    return [f"not integer-only: {names} left in float (no int8 kernel)"]


def _quantizer(export_format: ExportFormat, options: ExportOptions) -> str:
    return options.quantizer if export_format.quantized_by == "--quantizer" else export_format.quantized_by


@dataclass
class _Verified:
    """A file written and checked against Keras."""

    path: Path
    size: int
    sha256: str
    loaded: _Loaded
    fidelity: Fidelity
    problems: list[str]
    passed: bool


class _Exporter:
    """One export call: the model's Keras predictions and the calibration images, shared by every format."""

    def __init__(self, source: ExportSource, formats: list[str], options: ExportOptions) -> None:
        self.source = source
        self.options = options
        with step(f"Keras predictions on {len(source.verification.labels)} images"):
            self.keras_probabilities = predict_in_batches(
                lambda x: source.model.predict(x, verbose=0), source.verification.pixels.astype(np.float32)
            )
        needs_calibration = any(FORMATS[name].calibrated for name in formats)
        calibration = CalibrationImages(source, options.calibration_samples) if needs_calibration else None
        self.inputs = ConversionInputs(options, calibration)

    def convert(self, export_format: ExportFormat, inputs: ConversionInputs):
        recipe = f" ({inputs.recipe.name})" if inputs.recipe is not None else ""
        try:
            with step(f"{export_format.name}: converting{recipe}"), output_to(self.source.log_path):
                return export_format.convert(self.source.model, inputs)
        except EdgetlError:
            raise
        except Exception as error:  # converters raise anything from ConverterError to ValueError and RuntimeError
            log.debug("%s conversion failed", export_format.name, exc_info=True)
            _append_trace(self.source.log_path, export_format.name, error)
            raise EdgetlError(
                f"{export_format.name} export failed: {_first_line(error)} (full log: {self.source.log_path})"
            ) from None

    @contextmanager
    def bias_corrected(self, recipe: Int8Recipe, inputs: ConversionInputs) -> Iterator[None]:
        if not recipe.bias_correction:
            yield
            return
        from edgetl.export.bias_correction import bias_corrected

        def keep_float(layer: str) -> bool:
            return any(_names_layer(name, layer) for name in recipe.float_layers)

        with output_to(self.source.log_path), bias_corrected(self.source.model, inputs.calibration_images, keep_float):
            yield

    def verify(self, export_format: ExportFormat, converted, destination: Path, gate: float) -> _Verified:
        verification = self.source.verification
        with step(f"{export_format.name}: verifying on {len(verification.labels)} images"):
            # SavedModel export prints its endpoints, LiteRT announces its delegate: both belong in the log.
            with output_to(self.source.log_path):
                size, sha256 = _write(export_format, converted, self.source, destination)
                loaded = _load(export_format, destination)
            probabilities = predict_in_batches(loaded.predict, verification.pixels)
        fidelity = compare(probabilities, self.keras_probabilities, verification.labels, self.source.metadata.labels)
        problems = _integer_only_problems(export_format, loaded.ops, self.options)
        passed = fidelity.agreement >= gate and not problems
        return _Verified(destination, size, sha256, loaded, fidelity, problems, passed)

    def export_int8(
        self, export_format: ExportFormat, destination: Path, gate: float
    ) -> tuple[_Verified, LadderResult]:
        """Climb the recipe ladder; every attempt is written beside the destination, the chosen one moved there."""
        available = self.inputs.calibration.available
        rungs = integer_rungs(
            self.options.calibration_samples,
            available,
            export_format.calibration_methods,
            export_format.most_calibration_images,
        )
        float_allowed = self.options.int8_fallback == "float" and export_format.rank_layers is not None
        attempts_dir = Path(
            tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".attempts", dir=destination.parent)
        )
        try:

            def attempt(recipe: Int8Recipe) -> Trial:
                inputs = replace(self.inputs, recipe=recipe)
                with self.bias_corrected(recipe, inputs):
                    converted = self.convert(export_format, inputs)
                path = attempts_dir / f"{len(os.listdir(attempts_dir))}{destination.suffix}"
                verified = self.verify(export_format, converted, path, gate)
                return Trial(verified.fidelity, verified.passed, verified.size, verified)

            def rank(recipe: Int8Recipe) -> list[str]:
                with step(f"{export_format.name}: ranking layers by int8 sensitivity"), output_to(self.source.log_path):
                    return export_format.rank_layers(self.source.model, replace(self.inputs, recipe=recipe))

            keeps = export_format.float_layers_keep_bias_correction
            result = climb(rungs, attempt, rank if float_allowed else None, keeps)
            chosen: _Verified = result.chosen.kept
            os.replace(chosen.path, destination)
            return replace(chosen, path=destination), result
        finally:
            shutil.rmtree(attempts_dir, ignore_errors=True)

    def export(self, name: str) -> ExportRecord:
        export_format = FORMATS[name]
        source = self.source
        destination = source.exports_dir / export_format.filename
        destination.parent.mkdir(parents=True, exist_ok=True)
        gate = export_format.min_agreement if self.options.min_agreement is None else self.options.min_agreement
        log.info("converting %s", name)
        ladder = None
        if export_format.calibrated:
            verified, ladder = self.export_int8(export_format, destination, gate)
        else:
            verified = self.verify(export_format, self.convert(export_format, self.inputs), destination, gate)
        fidelity, ops = verified.fidelity, verified.loaded.ops
        return ExportRecord(
            format=name,
            path=str(destination.relative_to(source.root)),
            size_bytes=verified.size,
            sha256=verified.sha256,
            input_dtype=verified.loaded.input_dtype,
            output_dtype=verified.loaded.output_dtype,
            images=fidelity.images,
            agreement=fidelity.agreement,
            top1=fidelity.top1,
            keras_top1=fidelity.keras_top1,
            max_probability_diff=fidelity.max_probability_diff,
            flipped_files=[str(source.verification.examples[i].path) for i in fidelity.flipped],
            min_agreement=gate,
            passed=verified.passed,
            per_class_accuracy_change=fidelity.per_class_accuracy_change,
            operators=ops.operators if ops else None,
            int8_op_share=round(ops.int8_share, 4) if ops else None,
            float_ops=ops.float_ops if ops else {},
            calibration_images=ladder.recipe.calibration_images if ladder else 0,
            quantizer=_quantizer(export_format, self.options),
            problems=verified.problems,
            confident_images=fidelity.confident_images,
            confident_agreement=fidelity.confident_agreement,
            mean_probability_diff=round(fidelity.mean_probability_diff, 6),
            recipe=ladder.recipe.name if ladder else "",
            float_layers=list(ladder.recipe.float_layers) if ladder else [],
            attempts=[asdict(attempt) for attempt in ladder.attempts] if ladder else [],
            runtimes=runtimes_for(export_format.kind, verified.loaded.input_dtype),
        )


def export_source(source: ExportSource, formats: list[str], options: ExportOptions) -> list[ExportRecord]:
    """Convert, write and verify each format in turn; exports.json is rewritten after each file."""
    check_formats(formats)
    check_options(formats, options)
    exporter = _Exporter(source, formats, options)
    source.read_exports()  # a damaged index is reported before any work
    results = []
    with step(f"exporting {len(formats)} format(s)", total=len(formats)) as exporting:
        for name in formats:
            exporting.describe(f"exporting {name}")
            record = exporter.export(name)
            # The index is updated after every file, so an interrupted export keeps what was done; the update is
            # merged under a lock, so a second export of the same run at the same time keeps its records too.
            record_export(source.exports_index, asdict(record))
            results.append(record)
            exporting.advance()
        exporting.describe("exported")
    return results


def _append_trace(log_path: Path, name: str, error: BaseException) -> None:
    import traceback

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(f"\n--- {name} export failed ---\n")
        handle.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))


def export_run(
    run_path: Path,
    formats: list[str],
    calibration_samples: int = ExportOptions.calibration_samples,
    min_agreement: float | None = None,
    options: ExportOptions | None = None,
    trust_model: bool = False,
) -> list[ExportRecord]:
    """Export a run directory's model (the source of `edgetl export RUN`)."""
    check_formats(formats)
    options = options or ExportOptions(calibration_samples=calibration_samples, min_agreement=min_agreement)
    check_options(formats, options)
    return export_source(from_run(run_path, trust_model=trust_model), formats, options)


def export_keras_file(
    model_path: Path,
    formats: list[str],
    labels_path: Path,
    calibration_dir: Path,
    options: ExportOptions,
    out: Path | None = None,
    image_size: int | None = None,
    normalization: str = "raw",
    trust_model: bool = False,
) -> tuple[Path, list[ExportRecord]]:
    """Export a Keras file edgetl did not train; returns the output folder and the records."""
    from edgetl.export.source import from_keras_file

    check_formats(formats)
    check_options(formats, options)
    source = from_keras_file(model_path, labels_path, calibration_dir, out, image_size, normalization, trust_model)
    return source.root, export_source(source, formats, options)


EXTERNAL_ONLY = ("labels", "calibration", "out", "image_size")


def export_any(
    source: Path,
    formats: list[str],
    options: ExportOptions,
    labels: Path | None = None,
    calibration: Path | None = None,
    out: Path | None = None,
    image_size: int | None = None,
    normalization: str = "raw",
    trust_model: bool = False,
) -> tuple[Path, list[ExportRecord]]:
    """The `edgetl export` entry point: a run directory, or a Keras file with --labels and --calibration."""
    source = Path(source)
    if source.suffix.lower() in (".keras", ".h5") and not source.is_dir():
        missing = [f"--{name}" for name, value in (("labels", labels), ("calibration", calibration)) if value is None]
        if missing:
            raise EdgetlError(
                f"{source}: a Keras file from outside edgetl needs {' and '.join(missing)} "
                f"(class names, one per line; a folder of images per class)"
            )
        return export_keras_file(
            source, formats, labels, calibration, options, out, image_size, normalization, trust_model
        )
    given = [
        f"--{name.replace('_', '-')}"
        for name, value in zip(EXTERNAL_ONLY, (labels, calibration, out, image_size), strict=True)
        if value is not None
    ]
    if given or normalization != "raw":
        flag = given[0] if given else "--normalization"
        raise EdgetlError(f"{flag} applies to a Keras model file, not to the run directory {source}; omit it")
    records = export_run(source, formats, options=options, trust_model=trust_model)
    return source, records
