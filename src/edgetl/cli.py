"""Thin click commands: parse flags, call one library function, print the result.

Nothing heavy is imported at module level, so `edgetl --help` and `edgetl classify` start fast and
classify never imports TensorFlow.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from edgetl import __version__
from edgetl.benchmark.settings import SshSettings
from edgetl.config import CACHES, CLASS_WEIGHTS, TrainConfig
from edgetl.data.options import LayoutOptions
from edgetl.flags import (
    BenchGroup,
    FiniteFloatRange,
    RegistryChoice,
    augment_flags,
    bench_outputs,
    bench_settings_flags,
    csv_layout_flags,
    default,
    export_option_flags,
    keras_file_flags,
    model_flags,
    no_report_option,
    quiet_option,
    remote_flags,
    reports_errors,
    split_bench_options,
    wide_option,
)
from edgetl.models.backbones import BACKBONES
from edgetl.runtime.bounds import MAX_BUDGET_MEGAPIXELS
from edgetl.runtime.runtimes import RUNTIMES
from edgetl.runtime.settings import ClassifySettings
from edgetl.terminal import finish_bench, progress_shown, refresh_report, table_layout, terminate_as_interrupt
from edgetl.tuning.settings import PERCENTILES, TuneSettings


@click.group(context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="edgetl")
@click.option("-v", "--verbose", is_flag=True, help="Log what the library does.")
@click.option(
    "--max-megapixels",
    type=FiniteFloatRange(min=0, min_open=True, max=MAX_BUDGET_MEGAPIXELS),
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
    terminate_as_interrupt()


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
@default(
    "--layout",
    TrainConfig,
    RegistryChoice("edgetl.data.layouts", "LAYOUTS", first=("auto",)),
    "How DATA is organised (auto recognises it).",
)
@csv_layout_flags
@default("--backbone", TrainConfig, None, ", ".join(BACKBONES) + ".")
@click.option(
    "--alpha",
    type=float,
    default=None,
    help="Width multiplier ("
    + "; ".join(f"{spec.name}: {', '.join(map(str, spec.alphas))}" for spec in BACKBONES.values() if spec.alphas)
    + ").",
)
@default("--image-size", TrainConfig, click.IntRange(min=min(spec.min_size for spec in BACKBONES.values())))
@default("--weights", TrainConfig, None, "imagenet, none (train from scratch), or a file.")
@default("--epochs", TrainConfig, click.IntRange(min=1), "Stage 1 epochs.")
@default("--batch-size", TrainConfig, click.IntRange(min=1))
@default("--learning-rate", TrainConfig, FiniteFloatRange(min=0, min_open=True))
@default("--dropout", TrainConfig, FiniteFloatRange(0, 1, max_open=True))
@default("--hidden-units", TrainConfig, click.IntRange(min=0), "Hidden dense layer.")
@default("--patience", TrainConfig, click.IntRange(min=1))
@default("--fine-tune-epochs", TrainConfig, click.IntRange(min=0), "Stage 2 epochs.")
@click.option("--fine-tune-layers", type=click.IntRange(min=1), default=None, help="Stage 2 unfreezes the top K.")
@click.option("--fine-tune-from", default=None, help="Stage 2 unfreezes from this backbone layer up.")
@click.option(
    "--fine-tune-learning-rate", type=FiniteFloatRange(min=0, min_open=True), default=None, help="Default lr/10."
)
@default("--class-weight", TrainConfig, click.Choice(CLASS_WEIGHTS))
@default(
    "--feature-cache/--no-feature-cache",
    TrainConfig,
    None,
    "Stage 1 without --augment: compute the frozen backbone's features once (in memory, or on disk if many).",
)
@default(
    "--cache",
    TrainConfig,
    click.Choice(CACHES),
    "Where decoded images are kept between epochs; auto: memory for small sets, else a file in RUN/cache/.",
)
@augment_flags
@default("--seed", LayoutOptions, int)
@click.option("--overwrite", is_flag=True, help="Replace a model already in the run directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress: neither edgetl's bars nor Keras' epoch lines.")
@no_report_option
@reports_errors
def train(
    data: str | None, out: Path | None, resume: Path | None, overwrite: bool, quiet: bool, no_report: bool, **options
) -> None:
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
    if result.worker.chief:
        refresh_report(result.run.path, no_report)


@main.command(short_help="Find the most accurate classifier that meets a device's latency and size budget.")
@click.argument("data", required=False)
@click.option("--out", "out", type=click.Path(path_type=Path), help="The search's folder to write.")
@click.option("--resume", "resume", type=click.Path(path_type=Path), help="Continue the interrupted search DIR.")
@click.option("--max-latency-ms", type=FiniteFloatRange(min=0, min_open=True), help="Latency budget, batch 1.")
@default("--percentile", TuneSettings, click.Choice(PERCENTILES), "Which latency the budget bounds.")
@click.option("--max-size-mb", type=FiniteFloatRange(min=0, min_open=True), help="File size budget.")
@click.option("--max-memory-mb", type=FiniteFloatRange(min=0, min_open=True), help="Peak memory budget.")
@default("--format", TuneSettings, RegistryChoice("edgetl.tuning.targets", "TUNABLE_FORMATS"), "Target format.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Runtime threads (default: its own).")
@click.option("--remote", "remotes", multiple=True, help="Also time on this board over SSH (user@host; repeatable).")
@click.option("--ssh-option", "ssh_options", multiple=True, help="Passed to ssh/scp as -o OPTION (repeatable).")
@click.option("--remote-python", default=SshSettings.python, show_default=True, help="The boards' Python interpreter.")
@click.option(
    "--space", default=None, help="Narrow the space: 'backbone=mobilenetv2;alpha=0.35,0.5;size=96,128;hidden=0,128'."
)
@default("--budget-minutes", TuneSettings, FiniteFloatRange(min=0, min_open=True), "Time for probing and halving.")
@default("--epochs", TrainConfig, click.IntRange(min=1), "Stage 1 epochs of the full training.")
@default("--fine-tune-epochs", TrainConfig, click.IntRange(min=0), "Stage 2 epochs of the finalists.")
@default("--weights", TrainConfig, None, "imagenet, none (from scratch), or a file (candidates it fits).")
@default("--finalists", TuneSettings, click.IntRange(min=1), "Trained in full, exported and timed again.")
@click.option("--exhaustive", is_flag=True, help="No halving: train every candidate that fits in full.")
@default("--batch-size", TrainConfig, click.IntRange(min=1))
@default("--seed", LayoutOptions, int)
@click.option("--quiet", "-q", is_flag=True, help="No progress on the terminal.")
@reports_errors
def tune(data: str | None, out: Path | None, resume: Path | None, quiet: bool, **options) -> None:
    """Find the most accurate classifier of DATA whose file meets the budget, timed on the device: every
    candidate's untrained file is built and timed first (here, and on each --remote board), those over budget are
    dropped, the rest train with successive halving, and the best are trained in full, exported and timed again.
    The winner is an ordinary run directory, DIR/winner; DIR/tune.json has every candidate and why it was dropped.

    Example: edgetl tune photos --out search --max-latency-ms 30 --max-size-mb 4 --remote pi@raspberrypi
    """
    from edgetl import api

    if resume is not None:
        if data is not None or out is not None:
            raise click.UsageError("--resume DIR takes no DATA or --out: the search remembers them")
        with progress_shown(quiet):
            result = api.tune(None, resume, resume=True)
    else:
        if data is None or out is None:
            raise click.UsageError("give DATA and --out DIR (or --resume DIR)")
        with progress_shown(quiet):
            result = api.tune(data, out, **options)
    for line in result.summary():
        click.echo(line)


@main.command(short_help="Export a run (or a Keras file) to TFLite and ONNX; verify each file.")
@click.argument("source", metavar="RUN|MODEL.keras", type=click.Path(path_type=Path))
@click.option("--formats", default=None, help="Comma list, e.g. tflite-float16,tflite-int8,onnx (overrides the flags).")
@click.option("--int8", is_flag=True, help="Also write full-integer int8 TFLite (and ONNX) files, calibrated.")
@click.option("--onnx/--no-onnx", default=True, show_default=True, help="Also write an ONNX file.")
@export_option_flags
@keras_file_flags
@wide_option
@quiet_option
@no_report_option
@reports_errors
def export(
    source: Path, formats: str | None, int8: bool, onnx: bool, wide: bool, quiet: bool, no_report: bool, **options
) -> None:
    """Export RUN's model (or a Keras file) to TFLite, ONNX, SavedModel; verify each file against Keras.

    Example: edgetl export run --int8
    """
    from edgetl import api

    with progress_shown(quiet):
        result = api.export(source, formats, int8=int8, onnx=onnx, **options)
    click.echo(result.summary(wide, *table_layout()))
    refresh_report(result.root, no_report)
    if result.problems:
        raise click.ClickException("; ".join(result.problems) + "; files kept for inspection")


@main.group(cls=BenchGroup, short_help="Benchmark a run's formats, or model files, side by side.")
def bench() -> None:
    """Benchmark formats side by side: `edgetl bench RUN`, `edgetl bench MODEL... --images DIR`,
    `edgetl bench compare A.json B.json`. A path is always benched, even a directory named run or compare.

    Example: edgetl bench run --threads 1,2 --json bench.json
    """


@bench.command("run", short_help="The default: `edgetl bench PATH...` benches a run or model files.")
@click.argument("targets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--images", type=click.Path(path_type=Path), help="For model files: class subfolders or file,label CSV.")
@bench_settings_flags
@click.option("--threads", default=None, help="Threads for TFLite and ONNX; several give one row each: 1,2,4.")
@remote_flags
@model_flags
@bench_outputs
@quiet_option
@no_report_option
@reports_errors
def bench_run_command(targets, threads, labels_file, quiet, no_report, **options):
    """Benchmark a RUN directory (Keras + every export) or exported .tflite/.onnx files (with --images, no
    TensorFlow needed): accuracy, agreement, latency, throughput, load time, memory, size.

    Example: edgetl bench run --threads 1,2   (or: edgetl bench model_int8.tflite --images photos)
    """
    from edgetl import api
    from edgetl.benchmark.exported import parse_threads

    outputs, gate_values = split_bench_options(options)
    with progress_shown(quiet):
        report = api.bench(*targets, threads=parse_threads(threads), labels=labels_file, **options)
    run = targets[0] if len(targets) == 1 and not targets[0].is_file() else None  # a run directory, as api.bench
    finish_bench(report, outputs, gate_values, run, no_report)


@bench.command("compare", short_help="Merge bench JSON files from several machines into one table.")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@bench_outputs
@reports_errors
def bench_compare_command(results, **options):
    """Merge `edgetl bench --json` files from several machines into one table; flag rows whose settings differ.

    Example: edgetl bench compare laptop.json raspberrypi.json
    """
    from edgetl.benchmark.compare import compare_results

    outputs, gate_values = split_bench_options(options)
    finish_bench(compare_results(list(results)), outputs, gate_values)


@main.command("report", short_help="Write one HTML page showing a run: data, training, exports, flips, bench.")
@click.argument("run", metavar="RUN|EXPORT_DIR", type=click.Path(path_type=Path))
@reports_errors
def report_command(run: Path) -> None:
    """Write RUN/report/index.html and print its path: one self-contained page (no network, no JavaScript needed)
    with the dataset, training curves, Keras' mistakes, a card per exported file, the images each file flipped with
    Keras' and the file's top-3, and the benchmarks. An outside model's export folder gets the sections it has.
    `train`, `export` and `bench` refresh it when they finish (--no-report skips).

    Example: edgetl report run
    """
    from edgetl import api

    click.echo(str(api.report(run).path))


@main.command(short_help="Classify images with an exported .tflite or .onnx file (no TensorFlow).")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1)
@default("--top-k", ClassifySettings, click.IntRange(min=1))
@click.option(
    "--threshold",
    type=FiniteFloatRange(0, 1),
    default=ClassifySettings.threshold,
    help='Below this top-1 score: "unknown".',
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image and line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV rows with a header.")
@click.option("--watch", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Classify new images.")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)))
@click.option("--threads", type=click.IntRange(min=1), default=None)
@default("--batch-size", ClassifySettings, click.IntRange(min=1))
@model_flags
@reports_errors
def classify(model: Path, inputs: tuple[str, ...], as_json: bool, as_csv: bool, watch: Path | None, **options) -> None:
    """Classify images with an exported .tflite or .onnx MODEL; needs no TensorFlow.

    Models from other tools run too: a .tflite with standard TFLite metadata (Model Maker, MediaPipe) as it is,
    one without metadata with --labels FILE (and --normalization for float input).

    INPUTS are files, folders (searched recursively), glob patterns, or - to read paths from standard input.
    With --watch DIR, each image that lands in DIR is classified as it arrives, until interrupted.
    Exits with status 1 if any image could not be classified.

    Example: edgetl classify run/exports/model_int8.tflite photos/*.jpg --top-k 3
    """
    from edgetl.runtime.classify import classify_stream, expand_inputs, paths_with_stdin
    from edgetl.runtime.engine import open_engine
    from edgetl.runtime.foreign import ModelFlags
    from edgetl.runtime.output import csv_header, format_result

    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    if not inputs and watch is None:
        raise click.UsageError("give images, folders or patterns to classify, - for standard input, or --watch DIR")
    style = "json" if as_json else "csv" if as_csv else "text"
    flags = ModelFlags(options.pop("labels_file"), options.pop("normalization"))
    engine = open_engine(model, runtime=options.pop("runtime"), threads=options.pop("threads"), flags=flags)
    settings = ClassifySettings(**options)
    k = min(settings.top_k, len(engine.labels))
    if style == "csv":
        click.echo(csv_header(k))
    failures = 0

    def emit(results) -> None:
        nonlocal failures
        for result in results:
            failures += result.error is not None
            click.echo(format_result(result, style, k), err=style == "text" and result.error is not None)

    emit(classify_stream(engine, expand_inputs(paths_with_stdin(inputs)), k, settings.threshold, settings.batch_size))
    if watch is not None:
        from edgetl.runtime.watch import new_images

        terminate_as_interrupt()
        arrivals = new_images(watch)  # what is there now is left alone; anything after the line below is not
        click.echo(f"watching {watch} for new images (Ctrl-C to stop)", err=True)
        try:
            # Batches of one: a frame is answered as soon as it lands.
            emit(classify_stream(engine, arrivals, k, settings.threshold, batch_size=1))
        except KeyboardInterrupt:
            click.echo("stopped watching", err=True)
    if failures:
        sys.exit(1)


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
