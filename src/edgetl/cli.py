"""Thin click commands: parse flags, call one library function, print the result.

Nothing heavy is imported at module level, so `edgetl --help` and `edgetl classify` start fast and
classify never imports TensorFlow.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
from pathlib import Path

import click

from edgetl import __version__
from edgetl.benchmark.settings import REMOTE_SAMPLE_IMAGES, BenchSettings, SshSettings
from edgetl.config import CACHES, CLASS_WEIGHTS, TrainConfig
from edgetl.errors import EdgetlError, UsageError
from edgetl.export.formats import FORMATS, ExportOptions, KerasFileOptions
from edgetl.export.int8 import CONFIDENT_AGREEMENT_TARGET, INT8_FALLBACKS, IO_TYPES, QUANTIZERS
from edgetl.models.backbones import BACKBONES
from edgetl.runtime.metadata import NORMALIZATIONS
from edgetl.runtime.runtimes import RUNTIMES
from edgetl.runtime.settings import ClassifySettings
from edgetl.terminal import progress_shown, table_layout
from edgetl.train.augment import FLIP_MODES


def reports_errors(command):
    """Turn an EdgetlError into click's one-line `Error: ...` and exit status 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UsageError as error:
            raise click.UsageError(str(error)) from None
        except EdgetlError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


class RegistryChoice(click.Choice):
    """A choice among a registry's names, read from its module when first needed (help or parsing): the registry
    stays the one list, and a module that imports NumPy is not imported by commands that never use it."""

    def __init__(self, module: str, registry: str, first: tuple[str, ...] = ()) -> None:
        self.module, self.registry, self.first = module, registry, first
        self.case_sensitive = True

    @functools.cached_property
    def choices(self) -> tuple[str, ...]:
        import importlib

        return (*self.first, *getattr(importlib.import_module(self.module), self.registry))


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress on the terminal.")
wide_option = click.option("--wide", is_flag=True, help="Every column, however wide the table gets.")


@click.group(context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="edgetl")
@click.option("-v", "--verbose", is_flag=True, help="Log what the library does.")
@click.option(
    "--max-megapixels",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Pixel budget of one decoded image; larger images are refused as that file's error. Raise it for huge scans.",
)
def main(verbose: bool, max_megapixels: float | None) -> None:
    """edgetl: train an image classifier, export it for edge devices, verify and benchmark it.

    \b
    From nothing to a benchmarked int8 model:
      edgetl sample-data digits
      edgetl train digits --out run --epochs 3
      edgetl export run --int8
      edgetl bench run --threads 1,2
      edgetl classify run/exports/model_int8.tflite digits/seven
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if max_megapixels is not None:
        from edgetl.runtime.image import set_max_megapixels

        set_max_megapixels(max_megapixels)


@main.command("sample-data", short_help="Write a small dataset of handwritten digits to try edgetl on.")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--per-class", type=click.IntRange(min=3), default=None, help="Images per class (default: all).")
@reports_errors
def sample_data(out_dir: Path, per_class: int | None) -> None:
    """Write the built-in sample dataset (scikit-learn's handwritten digits) as OUT_DIR/<class>/*.png.

    Example: edgetl sample-data digits --per-class 30
    """
    from edgetl import api

    counts = api.sample_data(out_dir, per_class=per_class)
    click.echo(f"wrote {sum(counts.values())} images in {len(counts)} classes to {out_dir}")


@main.command(short_help="Train a classifier on class folders, a CSV, an .npz or tfds:NAME.")
@click.argument("data", required=False)
@click.option("--out", "out", type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--resume", "resume", type=click.Path(path_type=Path), help="Continue the interrupted run RUN.")
@click.option(
    "--layout",
    type=RegistryChoice("edgetl.data.layouts", "LAYOUTS", first=("auto",)),
    default=TrainConfig.layout,
    show_default=True,
    help="How DATA is organised (auto recognises it).",
)
@click.option("--id-column", default=None, help="CSV layout: the column of image ids (guessed: id, filename, ...).")
@click.option("--label-column", default=None, help="CSV layout: the column of labels (guessed: label, breed, ...).")
@click.option("--images", default=None, help="CSV layout: the image folder inside DATA (default train/).")
@click.option("--backbone", default=TrainConfig.backbone, show_default=True, help=", ".join(BACKBONES) + ".")
@click.option(
    "--alpha",
    type=float,
    default=None,
    help="Width multiplier ("
    + "; ".join(f"{spec.name}: {', '.join(map(str, spec.alphas))}" for spec in BACKBONES.values() if spec.alphas)
    + ").",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=min(spec.min_size for spec in BACKBONES.values())),
    default=TrainConfig.image_size,
    show_default=True,
)
@click.option(
    "--weights", default=TrainConfig.weights, show_default=True, help="imagenet, none (train from scratch), or a file."
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=TrainConfig.epochs, show_default=True, help="Stage 1 epochs."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=TrainConfig.batch_size, show_default=True)
@click.option(
    "--learning-rate", type=click.FloatRange(min=0, min_open=True), default=TrainConfig.learning_rate, show_default=True
)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=TrainConfig.dropout, show_default=True)
@click.option(
    "--hidden-units",
    type=click.IntRange(min=0),
    default=TrainConfig.hidden_units,
    show_default=True,
    help="Hidden dense layer.",
)
@click.option("--patience", type=click.IntRange(min=1), default=TrainConfig.patience, show_default=True)
@click.option(
    "--fine-tune-epochs",
    type=click.IntRange(min=0),
    default=TrainConfig.fine_tune_epochs,
    show_default=True,
    help="Stage 2 epochs.",
)
@click.option("--fine-tune-layers", type=click.IntRange(min=1), default=None, help="Stage 2 unfreezes the top K.")
@click.option("--fine-tune-from", default=None, help="Stage 2 unfreezes from this backbone layer up.")
@click.option(
    "--fine-tune-learning-rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Default lr/10."
)
@click.option("--class-weight", type=click.Choice(CLASS_WEIGHTS), default=TrainConfig.class_weight, show_default=True)
@click.option(
    "--feature-cache/--no-feature-cache",
    default=TrainConfig.feature_cache,
    show_default=True,
    help="Stage 1 without --augment: compute the frozen backbone's features once (in memory, or on disk if many).",
)
@click.option(
    "--cache",
    type=click.Choice(CACHES),
    default=TrainConfig.cache,
    show_default=True,
    help="Where decoded images are kept between epochs; auto: memory for small sets, else a file in RUN/cache/.",
)
@click.option("--augment", is_flag=True, help="Random flips, rotation, zoom, shifts, brightness, contrast.")
@click.option(
    "--flip",
    type=click.Choice(FLIP_MODES),
    default=TrainConfig.flip,
    show_default=True,
)
@click.option(
    "--rotation",
    type=click.FloatRange(0, 1),
    default=TrainConfig.rotation,
    show_default=True,
    help="Fraction of a turn.",
)
@click.option("--zoom", type=click.FloatRange(0, 1), default=TrainConfig.zoom, show_default=True)
@click.option("--translation", type=click.FloatRange(0, 1), default=TrainConfig.translation, show_default=True)
@click.option("--brightness", type=click.FloatRange(0, 1), default=TrainConfig.brightness, show_default=True)
@click.option("--contrast", type=click.FloatRange(0, 1), default=TrainConfig.contrast, show_default=True)
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a model already in the run directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress: neither edgetl's bars nor Keras' epoch lines.")
@reports_errors
def train(data: str | None, out: Path | None, resume: Path | None, overwrite: bool, quiet: bool, **options) -> None:
    """Train a classifier on DATA: class folders, train/valid/test folders, labels.csv + images, an .npz, or
    tfds:NAME. `--resume RUN` continues an interrupted run instead.

    Example: edgetl train photos --out run --epochs 10 --fine-tune-epochs 5
    """
    from edgetl import api

    if resume is not None:
        if data is not None or out is not None:
            raise click.UsageError("--resume RUN takes no DATA or --out: the run remembers them")
        with progress_shown(quiet):
            result = api.resume(resume, verbose=not quiet)
    else:
        if data is None or out is None:
            raise click.UsageError("give DATA and --out RUN (or --resume RUN)")
        with progress_shown(quiet):
            result = api.train(data, out, overwrite=overwrite, verbose=not quiet, **options)
    for line in result.summary():
        click.echo(line)


@main.command(short_help="Export a run (or a Keras file) to TFLite and ONNX; verify each file.")
@click.argument("source", metavar="RUN|MODEL.keras", type=click.Path(path_type=Path))
@click.option("--formats", default=None, help="Comma list, e.g. tflite-float16,tflite-int8,onnx (overrides the flags).")
@click.option("--int8", is_flag=True, help="Also write full-integer int8 TFLite (and ONNX) files, calibrated.")
@click.option("--onnx/--no-onnx", default=True, show_default=True, help="Also write an ONNX file.")
@click.option(
    "--io-type",
    type=click.Choice(IO_TYPES),
    default=None,
    help="Input/output tensor type of the int8 TFLite file [default: "
    + "; ".join(f"{io_type} with --quantizer {name}" for name, io_type in QUANTIZERS.items())
    + "]. MediaPipe and Android tooling take uint8 or float32, not int8.",
)
@click.option(
    "--quantizer",
    type=click.Choice(list(QUANTIZERS)),
    default=ExportOptions.quantizer,
    show_default=True,
    help="Who makes the int8 TFLite file: the TFLite converter or ai-edge-quantizer (int8 I/O only).",
)
@click.option(
    "--int8-fallback",
    type=click.Choice(INT8_FALLBACKS),
    default=ExportOptions.int8_fallback,
    show_default=True,
    help=f"When no integer-only recipe reaches --min-agreement (or {CONFIDENT_AGREEMENT_TARGET:.0%} agreement on the "
    "images Keras is confident about), may the most sensitive layers stay in float (none: integer-only, for NPUs "
    "and Edge TPU).",
)
@click.option(
    "--opset", type=click.IntRange(min=13), default=ExportOptions.opset, show_default=True, help="ONNX opset."
)
@click.option(
    "--calibration-samples", type=click.IntRange(min=1), default=ExportOptions.calibration_samples, show_default=True
)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    default=None,
    help="Fail an export whose top-1 agreement with Keras is lower [default: each format's own, "
    + ", ".join(f"{name} {f.min_agreement}" for name, f in FORMATS.items())
    + "].",
)
@click.option("--labels", type=click.Path(path_type=Path), help="MODEL.keras only: class names, one per line.")
@click.option(
    "--calibration",
    type=click.Path(path_type=Path),
    help="MODEL.keras only: images, a folder per class (named as the labels) or a plain folder (no labels).",
)
@click.option("--out", type=click.Path(path_type=Path), help="MODEL.keras only: output folder.")
@click.option("--image-size", type=click.IntRange(min=8), default=None, help="MODEL.keras only, if not fixed.")
@click.option(
    "--normalization",
    type=click.Choice(list(NORMALIZATIONS)),
    default=KerasFileOptions.normalization,
    show_default=True,
    help="MODEL.keras only: what input the model expects; edgetl prepends it so exports take raw pixels.",
)
@click.option("--trust-model", is_flag=True, help="Load the Keras file without safe mode (runs code stored in it).")
@wide_option
@quiet_option
@reports_errors
def export(source: Path, formats: str | None, int8: bool, onnx: bool, wide: bool, quiet: bool, **options) -> None:
    """Export RUN's model (or a Keras file) to TFLite, ONNX, SavedModel; verify each file against Keras.

    Example: edgetl export run --int8
    """
    from edgetl import api

    with progress_shown(quiet):
        result = api.export(source, formats, int8=int8, onnx=onnx, **options)
    click.echo(result.summary(wide, *table_layout()))
    if result.problems:
        raise click.ClickException("; ".join(result.problems) + "; files kept for inspection")


class BenchGroup(click.Group):
    """`edgetl bench RUN ...` runs the default command; `edgetl bench compare ...` the subcommand.

    A word is taken for a subcommand only when it is not an existing path: a run directory called `run` or
    `compare` (the demo writes demo-out/run) is benched, not mistaken for the subcommand of that name."""

    def parse_args(self, ctx, args):
        if args and args[0] not in ctx.help_option_names and (args[0] not in self.commands or Path(args[0]).exists()):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def model_flags(command):
    """--labels and --normalization: what a model file from another tool does not say itself."""
    command = click.option(
        "--normalization",
        type=click.Choice(list(NORMALIZATIONS)),
        default=None,
        help="For a model without metadata (another tool's): what its float input expects.",
    )(command)
    return click.option(
        "--labels",
        "labels_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="For a model without metadata (another tool's): class names, one per line, in output order.",
    )(command)


def bench_outputs(command):
    """The output and gate options `bench run` and `bench compare` share."""
    file = click.Path(dir_okay=False, path_type=Path)
    for option in reversed(
        [
            wide_option,
            click.option("--json", "json_path", type=file, help="Write the rows as JSON."),
            click.option("--csv", "csv_path", type=file, help="Write the rows as CSV."),
            click.option("--markdown", "markdown_path", type=file, help="Write the table as Markdown."),
            click.option("--plot", "plot_path", type=file, help="PNG: top-1 against p50 latency, marker ~ size."),
            click.option("--max-accuracy-drop", type=click.FloatRange(min=0), help="Fail above this top-1 drop."),
            click.option("--min-agreement", type=click.FloatRange(0, 1), help="Fail below this agreement."),
            click.option("--max-p90-ms", type=click.FloatRange(min=0, min_open=True), help="Fail above this p90."),
        ]
    ):
        command = option(command)
    return command


def finish_bench(report, outputs: dict, gate_values: dict) -> None:
    from edgetl.benchmark.gates import Gates, failed_gates
    from edgetl.benchmark.report import format_table, write_outputs

    click.echo(format_table(report, outputs.pop("wide"), *table_layout()))
    for path in write_outputs(report, **outputs):
        click.echo(f"written {path}")
    problems = report.errors + failed_gates(report.rows, Gates(**gate_values))
    for line in problems:
        click.echo(f"Error: {line}" if line in report.errors else f"FAILED {line}", err=True)
    if problems:
        sys.exit(1)


def _split_bench_options(options: dict) -> tuple[dict, dict]:
    outputs = {key: options.pop(key) for key in ("json_path", "csv_path", "markdown_path", "plot_path", "wide")}
    gate_values = {key: options.pop(key) for key in ("max_accuracy_drop", "min_agreement", "max_p90_ms")}
    return outputs, gate_values


@main.group(cls=BenchGroup, short_help="Benchmark a run's formats, or model files, side by side.")
def bench() -> None:
    """Benchmark formats side by side: `edgetl bench RUN`, `edgetl bench MODEL... --images DIR`,
    `edgetl bench compare A.json B.json`. A path is always benched, even a directory named run or compare.

    Example: edgetl bench run --threads 1,2 --json bench.json
    """


@bench.command("run", short_help="The default: `edgetl bench PATH...` benches a run or model files.")
@click.argument("targets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--images", type=click.Path(path_type=Path), help="For model files: class subfolders or file,label CSV.")
@click.option(
    "--runs", type=click.IntRange(min=1), default=BenchSettings.runs, show_default=True, help="Timed batch-1 calls."
)
@click.option("--warmup", type=click.IntRange(min=0), default=BenchSettings.warmup, show_default=True)
@click.option(
    "--batch", type=click.IntRange(min=1), default=BenchSettings.batch, show_default=True, help="Throughput batch size."
)
@click.option("--settle", is_flag=True, help="Repeat rounds of --runs calls until p50 and p90 stop moving.")
@click.option("--threads", default=None, help="Threads for TFLite and ONNX; several give one row each: 1,2,4.")
@click.option("--remote", "remotes", multiple=True, help="Also bench on this board over SSH (user@host; repeatable).")
@click.option("--ssh-option", "ssh_options", multiple=True, help="Passed to ssh/scp as -o OPTION (repeatable).")
@click.option("--remote-python", default=SshSettings.python, show_default=True, help="The boards' Python interpreter.")
@click.option("--remote-images", type=click.IntRange(min=1), default=REMOTE_SAMPLE_IMAGES, show_default=True)
@model_flags
@bench_outputs
@quiet_option
@reports_errors
def bench_run_command(targets, threads, labels_file, quiet, **options):
    """Benchmark a RUN directory (Keras + every export) or exported .tflite/.onnx files (with --images, no
    TensorFlow needed): accuracy, agreement, latency, throughput, load time, memory, size.

    Example: edgetl bench run --threads 1,2   (or: edgetl bench model_int8.tflite --images photos)
    """
    from edgetl import api
    from edgetl.benchmark.exported import parse_threads

    outputs, gate_values = _split_bench_options(options)
    with progress_shown(quiet):
        report = api.bench(*targets, threads=parse_threads(threads), labels=labels_file, **options)
    finish_bench(report, outputs, gate_values)


@bench.command("compare", short_help="Merge bench JSON files from several machines into one table.")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@bench_outputs
@reports_errors
def bench_compare_command(results, **options):
    """Merge `edgetl bench --json` files from several machines into one table; flag rows whose settings differ.

    Example: edgetl bench compare laptop.json raspberrypi.json
    """
    from edgetl.benchmark.compare import compare_results

    outputs, gate_values = _split_bench_options(options)
    finish_bench(compare_results(list(results)), outputs, gate_values)


def _paths_from(inputs: tuple[str, ...]):
    """The inputs, with `-` replaced by the paths read from standard input, one per line."""
    for item in inputs:
        if item == "-":
            yield from (line.strip() for line in sys.stdin if line.strip())
        else:
            yield item


@main.command(short_help="Classify images with an exported .tflite or .onnx file (no TensorFlow).")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1)
@click.option("--top-k", type=click.IntRange(min=1), default=ClassifySettings.top_k, show_default=True)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=ClassifySettings.threshold,
    help='Below this top-1 score: "unknown".',
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image and line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV rows with a header.")
@click.option("--watch", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Classify new images.")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)))
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=ClassifySettings.batch_size, show_default=True)
@model_flags
@reports_errors
def classify(
    model: Path,
    inputs: tuple[str, ...],
    top_k: int,
    threshold: float,
    as_json: bool,
    as_csv: bool,
    watch: Path | None,
    runtime: str | None,
    threads: int | None,
    batch_size: int,
    labels_file: Path | None,
    normalization: str | None,
) -> None:
    """Classify images with an exported .tflite or .onnx MODEL; needs no TensorFlow.

    Models from other tools run too: a .tflite with standard TFLite metadata (Model Maker, MediaPipe) as it is,
    one without metadata with --labels FILE (and --normalization for float input).

    INPUTS are files, folders (searched recursively), glob patterns, or - to read paths from standard input.
    With --watch DIR, each image that lands in DIR is classified as it arrives, until interrupted.
    Exits with status 1 if any image could not be classified.

    Example: edgetl classify run/exports/model_int8.tflite photos/*.jpg --top-k 3
    """
    from edgetl.runtime.classify import classify_stream, expand_inputs
    from edgetl.runtime.engine import open_engine
    from edgetl.runtime.foreign import ModelFlags
    from edgetl.runtime.output import csv_header, format_result

    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    if not inputs and watch is None:
        raise click.UsageError("give images, folders or patterns to classify, - for standard input, or --watch DIR")
    style = "json" if as_json else "csv" if as_csv else "text"
    engine = open_engine(model, runtime=runtime, threads=threads, flags=ModelFlags(labels_file, normalization))
    k = min(top_k, len(engine.labels))
    if style == "csv":
        click.echo(csv_header(k))
    failures = 0

    def emit(results) -> None:
        nonlocal failures
        for result in results:
            failures += result.error is not None
            click.echo(format_result(result, style, k), err=style == "text" and result.error is not None)

    emit(classify_stream(engine, expand_inputs(_paths_from(inputs)), k, threshold, batch_size))
    if watch is not None:
        from edgetl.runtime.watch import new_images

        signal.signal(signal.SIGTERM, _interrupt)
        arrivals = new_images(watch)  # what is there now is left alone; anything after the line below is not
        click.echo(f"watching {watch} for new images (Ctrl-C to stop)", err=True)
        try:
            # Batches of one: a frame is answered as soon as it lands.
            emit(classify_stream(engine, arrivals, k, threshold, batch_size=1))
        except KeyboardInterrupt:
            click.echo("stopped watching", err=True)
    if failures:
        sys.exit(1)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@main.command(short_help="Say which runtimes can run models here, and what to install for the rest.")
def doctor() -> None:
    """Say which runtimes can run models here, and for each that cannot, why and what to install.

    Example: edgetl doctor
    """
    from edgetl.runtime.doctor import check_runtimes, machine_summary

    click.echo(machine_summary())
    checks = check_runtimes()
    for line in (line for check in checks for line in check.lines()):
        click.echo(line)
    for suffix in (".tflite", ".onnx"):
        if not any(check.usable for check in checks if check.runs == suffix):
            raise click.ClickException(f"nothing here can run {suffix} files; see the fixes above")
