"""`edgetl export`: convert a Keras model to each format, write it with its metadata, verify it against Keras.

This module is the conversion and verification loop (the int8 recipe ladder included). What each format is lives
in the format table (formats.py), what an export starts from (a run directory or an outside Keras file) in
source.py, how a file is written and opened in written.py, and what is recorded of it in record.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.exporting import int8
from edgetl.exporting.activation_ranges import images_per_batch
from edgetl.exporting.calibration import CalibrationImages, ImageSample
from edgetl.exporting.converter_exports import converter_exports_kept
from edgetl.exporting.formats import (
    FORMATS,
    MAKING_ORDER,
    ConversionInputs,
    ExportFormat,
    ExportOptions,
    KerasFileOptions,
    check_formats,
    check_options,
)
from edgetl.exporting.int8 import (
    CONFIDENT_AGREEMENT_TARGET,
    Int8Recipe,
    LadderResult,
    Trial,
    climb,
    integer_rungs,
    most_calibration_images,
)
from edgetl.exporting.keras_passes import activation_bytes, keras_batch_size, keras_probabilities
from edgetl.exporting.logs import append_trace, first_line, output_to
from edgetl.exporting.memory import collect_garbage, hand_back_large_blocks, settled_objects_frozen
from edgetl.exporting.record import ExportRecord, Verified, make_record
from edgetl.exporting.source import ExportSource, from_run, resolve_source
from edgetl.exporting.tflite import OpReport, names_layer
from edgetl.exporting.verify import (
    RUNTIME_BATCH,
    RUNTIME_BATCH_BYTES,
    Fidelity,
    OrderedRun,
    compare,
    compare_run,
    verification_order,
)
from edgetl.exporting.written import FILE_KINDS, load_written, write_converted
from edgetl.files import refuse_links, remove_if_there, temporary_name
from edgetl.progress import step
from edgetl.run import commit_export

log = logging.getLogger(__name__)

# The cache entry of bias correction's input sums (bias_correction.InputSums), shared by every rung and format.
INPUT_SUMS = "bias-correction-input-sums"


def _integer_only_problems(export_format: ExportFormat, ops: OpReport | None, options: ExportOptions) -> list[str]:
    """An integer-only format with ops left in float, unless float islands were allowed (`--int8-fallback float`)."""
    if not export_format.integer_only or ops is None or not ops.float_ops or options.int8_fallback == "float":
        return []
    names = ", ".join(f"{op} x{count}" for op, count in ops.float_ops.items())
    return [f"not integer-only: {names} left in float (no int8 kernel)"]


class _Exporter:
    """One export call: the model's Keras predictions and the calibration images, shared by every format."""

    def __init__(self, source: ExportSource, formats: list[str], options: ExportOptions) -> None:
        self.source = source
        self.options = options
        needs_calibration = any(FORMATS[name].calibrated for name in formats)
        calibration = CalibrationImages(source, options.calibration_samples) if needs_calibration else None
        self.inputs = ConversionInputs(options, calibration)
        self._keras_probabilities: np.ndarray | None = None
        self._activation_bytes: int | None = None  # the model's layer outputs for one image, when first needed
        # Per file written, the other programs that run it (consumers.CONSUMERS), started as it was written.
        self._consumers: dict[Path, list[tuple[object, object]]] = {}

    @property
    def keras_probabilities(self) -> np.ndarray:
        """Keras' predictions on the verification images, made when first needed: when the first file is verified
        (after its conversion, which then runs beside nothing TensorFlow's memory pool keeps of the Keras pass: the
        ONNX file is made first, and tf2onnx needs the most memory), or when a ladder's first rung corrects its
        biases, whichever comes first (`_predicted` may measure the sums the rung needs)."""
        if self._keras_probabilities is None:
            with step(f"Keras predictions on {len(self.source.verification.labels)} images"):
                self._keras_probabilities = self._predicted()
        return self._keras_probabilities

    def _predicted(self) -> np.ndarray:
        """Keras' predictions on the verification images. Where the calibration images are among them (an outside
        model calibrated and verified on one folder), the pass over those also sums bias correction's inputs over
        the ladder's first sample and its largest (`InputSums.with_outputs`): the model runs over each image once
        for both, instead of again for each sample. Summing costs more than predicting (on `mnv2-224`, 19 against
        11 ms an image), so when no rung takes the largest sample the pass costs a little more than predicting
        alone; the ONNX ladder takes it on every natural-photo model measured (docs/benchmarks.md)."""
        from edgetl.exporting.bias_correction import InputSums

        model, verification, calibration = self.source.model, self.source.verification, self.inputs.calibration
        # The first sample (decoded already) tells before any more is decoded.
        if calibration is None or calibration.positions_in(verification, calibration.kept) is None:
            return keras_probabilities(model, verification.pixels)
        samples = self.options.calibration_samples
        largest = calibration.take(most_calibration_images(samples, calibration.available))
        positions = calibration.positions_in(verification, len(largest))
        if positions is None:
            return keras_probabilities(model, verification.pixels)
        sums = self.inputs.cache.setdefault(INPUT_SUMS, InputSums())
        if len(sums.measured) > 1:  # a rung summed its sample already (bias_corrected passes here first)
            return keras_probabilities(model, verification.pixels)
        counts = [len(calibration.take(samples)), len(largest)]
        outputs = sums.with_outputs(model, largest, counts, keras_batch_size(model))
        probabilities = np.empty((len(verification.labels), *outputs.shape[1:]), outputs.dtype)
        probabilities[positions] = outputs
        rest = np.setdiff1d(np.arange(len(probabilities)), positions)
        if rest.size:
            pixels = ImageSample(lambda start, stop: verification.read(rest[start:stop]), len(rest))
            probabilities[rest] = keras_probabilities(model, pixels)
        return probabilities

    def convert(self, export_format: ExportFormat, inputs: ConversionInputs):
        recipe = f" ({inputs.recipe.name})" if inputs.recipe is not None else ""
        try:
            with step(f"{export_format.name}: converting{recipe}"), output_to(self.source.log_path):
                converted = export_format.convert(self.source.model, inputs)
            collect_garbage()
            return converted
        except EdgetlError:
            raise
        except Exception as error:  # converters raise anything from ConverterError to ValueError and RuntimeError
            log.debug("%s conversion failed", export_format.name, exc_info=True)
            append_trace(self.source.log_path, export_format.name, error)
            raise EdgetlError(
                f"{export_format.name} export failed: {first_line(error)} (full log: {self.source.log_path})"
            ) from None

    @contextmanager
    def bias_corrected(
        self, export_format: ExportFormat, recipe: Int8Recipe, inputs: ConversionInputs
    ) -> Iterator[dict]:
        """Inside, the model corrected as the recipe asks; yields the corrections (bias_correction.Correction by
        convolution), none without bias correction."""
        if not recipe.bias_correction:
            yield {}
            return
        from edgetl.exporting.bias_correction import InputSums, bias_corrected

        def keep_float(layer: str) -> bool:
            return any(names_layer(name, layer) for name in recipe.float_layers)

        pair_limited = export_format.pair_limited_weights(self.options)
        self.keras_probabilities  # noqa: B018 - made first: its pass may measure the sums (_predicted)
        sums = self.inputs.cache.setdefault(INPUT_SUMS, InputSums())
        corrected = bias_corrected(
            self.source.model, inputs.calibration_images, keep_float, pair_limited=pair_limited, sums=sums
        )
        with output_to(self.source.log_path), corrected as corrections:
            yield corrections

    def verify(
        self, export_format: ExportFormat, converted, destination: Path, gate: float, stop: Callable | None = None
    ) -> tuple[Verified, OrderedRun]:
        """Write the file, open it as its users will and compare its predictions with Keras'. With `stop` (an int8
        attempt's `cannot_matter`, given the run so far), the images are run in `verification_order` and no further
        than `stop` needs: the figures are then of the images run, and the run (OrderedRun) goes on in `finish`."""
        verification = self.source.verification
        batch = self._runtime_batch(export_format)
        run = OrderedRun.in_order(len(verification.labels), batch)
        if stop is not None:
            keras = self.keras_probabilities  # before the file's engine is opened: the pass may run the model
            run = OrderedRun(verification_order(keras), keras, batch)
        until = "" if stop is None else "up to "  # a ladder attempt stops once the rest cannot matter
        with step(f"{export_format.name}: verifying on {until}{len(verification.labels)} images"):
            # SavedModel export prints its endpoints, LiteRT announces its delegate: both belong in the log.
            with output_to(self.source.log_path):
                size, sha256 = write_converted(export_format, converted, self.source.metadata, destination)
                loaded = load_written(export_format, destination)
            self._consumers[destination] = self._start_consumers(export_format, destination, loaded.input_dtype)
            run.go_on(loaded.predict, verification.pixels, stop)
        # The engine goes now (its model and its activation arena): what the record needs of it is kept, and every
        # format's and the ladder's best attempt's records are held to the end.
        loaded = replace(loaded, predict=None)
        collect_garbage()
        problems = _integer_only_problems(export_format, loaded.ops, self.options)
        verified = Verified(destination, size, sha256, loaded, None, problems, False)
        return self._compared(verified, compare_run(run, self.keras_probabilities, *self._labels), gate), run

    def _runtime_batch(self, export_format: ExportFormat) -> int:
        """Images the file's runtime verifies a call: as many as its kind allows (FileKind.batch) where the model's
        layer outputs for them fit RUNTIME_BATCH_BYTES."""
        allowed = FILE_KINDS[export_format.kind].batch
        if allowed <= RUNTIME_BATCH:
            return RUNTIME_BATCH
        if self._activation_bytes is None:
            self._activation_bytes = activation_bytes(self.source.model)
        return min(allowed, images_per_batch(self._activation_bytes, RUNTIME_BATCH_BYTES))

    @property
    def _labels(self) -> tuple:
        """The verification images' labels and the class names, as `compare` takes them."""
        return self.source.verification.labels, self.source.metadata.labels

    @staticmethod
    def _compared(verified: Verified, fidelity: Fidelity, gate: float) -> Verified:
        """`verified` with its figures, passed when they reach `gate` and its format has no problem with it."""
        return replace(verified, fidelity=fidelity, passed=fidelity.agreement >= gate and not verified.problems)

    def finish(self, export_format: ExportFormat, verified: Verified, run: OrderedRun, gate: float) -> Verified:
        """Run the images a verification stopped before (`verify` with `stop`), in a session of its own of the
        same file, and compare over all of them."""
        verification = self.source.verification
        with step(f"{export_format.name}: verifying on the last {len(run.order) - run.done} images"):
            with output_to(self.source.log_path):
                loaded = load_written(export_format, verified.path)
            run.go_on(loaded.predict, verification.pixels)
        del loaded
        collect_garbage()
        return self._compared(verified, compare_run(run, self.keras_probabilities, *self._labels), gate)

    def export_int8(self, export_format: ExportFormat, destination: Path, gate: float) -> tuple[Verified, LadderResult]:
        """Climb the recipe ladder; every attempt is written beside the destination, the chosen one moved there."""
        available = self.inputs.calibration.available
        rungs = integer_rungs(self.options.calibration_samples, available, export_format.methods(self.options))
        float_allowed = self.options.int8_fallback == "float" and export_format.rank_layers is not None
        attempts_dir = Path(
            tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".attempts", dir=destination.parent)
        )
        try:

            def attempt(recipe: Int8Recipe, rival: float | None) -> Trial:
                inputs = replace(self.inputs, recipe=recipe)
                with self.bias_corrected(export_format, recipe, inputs) as corrections:
                    converted = self.convert(export_format, replace(inputs, corrections=corrections))
                path = attempts_dir / f"{len(os.listdir(attempts_dir))}{destination.suffix}"

                def cannot_matter(run: OrderedRun) -> bool:
                    counts = run.flips, len(run.order), run.confident_flips, run.confident_images
                    return int8.cannot_matter(*counts, gate, target, rival)

                verified, run = self.verify(export_format, converted, path, gate, cannot_matter)
                trial = Trial(verified.fidelity, verified.passed, verified.size, verified)
                if not run.complete:

                    def finish() -> Trial:
                        whole = self.finish(export_format, verified, run, gate)
                        return Trial(whole.fidelity, whole.passed, whole.size, whole)

                    trial.finish = finish
                if not int8.settled(trial, target):  # climbing on: its consumers' figures are not needed
                    self._stop_consumers(path)
                return trial

            def rank(recipe: Int8Recipe) -> list[str]:
                # On the recipe's own graph, bias corrections included (when its graph is no longer kept, it is
                # made again, from the same corrections).
                inputs = replace(self.inputs, recipe=recipe)
                with (
                    step(f"{export_format.name}: ranking layers by int8 sensitivity"),
                    output_to(self.source.log_path),
                    self.bias_corrected(export_format, recipe, inputs) as corrections,
                ):
                    ranked = export_format.rank_layers(self.source.model, replace(inputs, corrections=corrections))
                collect_garbage()
                return ranked

            target = CONFIDENT_AGREEMENT_TARGET if float_allowed else None
            result = climb(rungs, attempt, rank if float_allowed else None, target)
            chosen: Verified = result.chosen.kept
            # The chosen file's consumers read it where it is: done before it moves, the others stopped.
            pending = self._consumers.pop(chosen.path, None)
            if pending is not None:
                self._consumers[destination] = [(consumer, _Done.of(running)) for consumer, running in pending]
            for path in [path for path in self._consumers if path.parent == attempts_dir]:
                self._stop_consumers(path)
            os.replace(chosen.path, destination)
            return replace(chosen, path=destination), result
        finally:
            shutil.rmtree(attempts_dir, ignore_errors=True)

    def _start_consumers(self, export_format: ExportFormat, path: Path, input_dtype: str) -> list[tuple]:
        """Start each other program that runs this file (consumers.CONSUMERS) on the verification photos, as soon
        as it is written: they run while edgetl's own runtime verifies it (LiteRT's default interpreter takes one
        core; MediaPipe's children share the photos). (consumer, what `result()` gives its scores) each."""
        from edgetl.exporting.consumers import consumers_for

        photos = [example.path for example in self.source.verification.examples]
        started = []
        for consumer in consumers_for(export_format.kind, input_dtype):
            try:
                started.append((consumer, consumer.started(path, photos, len(self.source.metadata.labels))))
            except Exception as error:  # reported where its figures are asked for (consumer_figures)
                started.append((consumer, _Done(error=error)))
        return started

    def _stop_consumers(self, path: Path | None = None) -> None:
        """Stop the consumers started on `path` (every file's, without it)."""
        for where in [path] if path is not None else list(self._consumers):
            for _, running in self._consumers.pop(where, []):
                running.stop()

    def consumer_figures(self, export_format: ExportFormat, verified: Verified) -> list[dict]:
        """Where the file's figures were measured: the runtime edgetl opened it with (default options), then each
        other program that runs it as its users do (consumers.CONSUMERS) on the same images."""
        from edgetl.exporting.consumers import consumer_label, measured_where

        figures = [measured_where(verified.loaded.runtime, "default", verified.fidelity)]
        verification, labels = self.source.verification, self.source.metadata.labels
        started = self._consumers.pop(verified.path, None)
        if started is None:  # stopped while the ladder climbed on, and chosen in the end
            started = self._start_consumers(export_format, verified.path, verified.loaded.input_dtype)
        for consumer, running in started:
            try:
                with step(f"{export_format.name}: verifying in {consumer.name}"), output_to(self.source.log_path):
                    probabilities = running.result()
            except Exception as error:  # another program's failure is a finding about it, not an export failure
                append_trace(self.source.log_path, f"{export_format.name} in {consumer.name}", error)
                log.warning("%s: %s could not run it (%s)", verified.path, consumer.name, first_line(error))
                continue
            fidelity = compare(probabilities, self.keras_probabilities, verification.labels, labels)
            figures.append(measured_where(consumer_label(consumer), consumer.options, fidelity))
        return figures

    def export(self, name: str) -> ExportRecord:
        """Write the format's file under a temporary name beside its place, verify it there, then move it into
        place together with its record (`commit_export`); on any failure or interruption the temporary file is
        removed and the file and record of an earlier export stay as they were."""
        export_format = FORMATS[name]
        source = self.source
        destination = source.exports_dir / export_format.filename
        refuse_links(source.root, destination, source.exports_index, source.log_path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        gate = export_format.min_agreement if self.options.min_agreement is None else self.options.min_agreement
        log.info("converting %s", name)
        written = temporary_name(destination)
        try:
            ladder = None
            if export_format.calibrated:
                verified, ladder = self.export_int8(export_format, written, gate)
            else:
                verified, _ = self.verify(export_format, self.convert(export_format, self.inputs), written, gate)
            figures = self.consumer_figures(export_format, verified)
            record = make_record(
                name, export_format, replace(verified, path=destination), ladder, source, gate, self.options, figures
            )
            commit_export(source.exports_index, written, destination, asdict(record), order=list(FORMATS))
            return record
        finally:
            self._stop_consumers()  # none is left running on a file an interrupted or failed export removes
            remove_if_there(written)


@dataclass(frozen=True)
class _Done:
    """A consumer's scores, or its failure, waited for already (consumers.Running's result and stop)."""

    scores: np.ndarray | None = None
    error: BaseException | None = None

    @classmethod
    def of(cls, running) -> _Done:
        try:
            return cls(scores=running.result())
        except Exception as error:  # raised again where its figures are asked for
            return cls(error=error)

    def result(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return self.scores

    def stop(self) -> None:
        pass


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote: the folder (a run directory, or an outside model's output folder) and a record per
    format, in the order asked for."""

    root: Path
    records: list[ExportRecord]

    @property
    def problems(self) -> list[str]:
        """Why a file is not fit to use: below its agreement gate, or not what its format promises."""
        reasons = [f"{r.format} disagree with Keras too often" for r in self.records if r.agreement < r.min_agreement]
        return reasons + [f"{r.format} is {problem}" for r in self.records for problem in r.problems]

    def summary(self, wide: bool = False, width: int | None = None, color: bool = False) -> str:
        """The table of files written (no wider than `width`), then a line per recipe climb, float op or flip."""
        from edgetl.exporting.report import format_export_table, record_notes

        notes = [line for record in self.records for line in record_notes(record)]
        return "\n".join([format_export_table(self.records, self.root, wide, width, color), *notes])


def _export_checked(source: ExportSource, formats: list[str], options: ExportOptions) -> list[ExportRecord]:
    """Convert, write and verify each format in turn (formats and options already checked); exports.json is
    rewritten after each file."""
    source.read_exports()  # a damaged index is reported before any work
    hand_back_large_blocks()
    exporter = _Exporter(source, formats, options)
    results = []
    making = sorted(formats, key=lambda name: MAKING_ORDER.index(FORMATS[name].kind))  # stable: in order per kind
    with (
        step(f"exporting {len(formats)} format(s)", total=len(formats)) as exporting,
        settled_objects_frozen(),
        converter_exports_kept(),  # the TFLite converter's SavedModel of the model, made once
    ):
        for position, name in enumerate(making):
            exporting.describe(f"exporting {name}")
            # Each file and its record are committed together as soon as it is verified, so an interrupted export
            # keeps what was done; the update is merged under a lock, so a second export of the same run at the
            # same time keeps its records too.
            record = exporter.export(name)
            results.append(record)
            if exporter.inputs.keep_only({FORMATS[later].kind for later in making[position + 1 :]}):
                collect_garbage()  # what went may be held in cycles
            exporting.advance()
        exporting.describe("exported")
    return sorted(results, key=lambda record: formats.index(record.format))


def _checked(formats: list[str], options: ExportOptions) -> None:
    """The formats and options of one export call, checked once, before a model is loaded."""
    check_formats(formats)
    check_options(formats, options)


def export_source(source: ExportSource, formats: list[str], options: ExportOptions) -> list[ExportRecord]:
    """Export an already resolved source (a run's, or an outside Keras file's)."""
    _checked(formats, options)
    return _export_checked(source, formats, options)


def export_run(
    run_path: Path,
    formats: list[str],
    calibration_samples: int = ExportOptions.calibration_samples,
    min_agreement: float | None = None,
    options: ExportOptions | None = None,
    trust_model: bool = False,
) -> list[ExportRecord]:
    """Export a run directory's model (the source of `edgetl export RUN`)."""
    options = options or ExportOptions(calibration_samples=calibration_samples, min_agreement=min_agreement)
    _checked(formats, options)
    return _export_checked(from_run(run_path, trust_model=trust_model), formats, options)


def export_any(
    source: Path,
    formats: list[str],
    options: ExportOptions,
    keras_file: KerasFileOptions | None = None,
    trust_model: bool = False,
) -> ExportResult:
    """A run directory, or a Keras file from outside edgetl (`keras_file` says what it needs): what `edgetl.export`
    and `edgetl export` call."""
    _checked(formats, options)
    resolved = resolve_source(Path(source), keras_file or KerasFileOptions(), trust_model)
    return ExportResult(resolved.root, _export_checked(resolved, formats, options))
