"""Thin click commands: parse flags, call one library function, print the result.

Nothing heavy is imported at module level, so `edgetl --help` and `edgetl classify` start fast and
classify never imports TensorFlow.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import click

from edgetl import __version__
from edgetl.errors import EdgetlError


def reports_errors(command):
    """Turn an EdgetlError into click's one-line `Error: ...` and exit status 1, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except EdgetlError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


@click.group()
@click.version_option(__version__, prog_name="edgetl")
@click.option("-v", "--verbose", is_flag=True, help="Log what the library does.")
def main(verbose: bool) -> None:
    """edgetl: train an image classifier, export it for edge devices, verify and benchmark it."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@main.command("sample-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--per-class", type=click.IntRange(min=3), default=None, help="Images per class (default: all).")
@reports_errors
def sample_data(out_dir: Path, per_class: int | None) -> None:
    """Write the built-in sample dataset (scikit-learn's handwritten digits) as OUT_DIR/<class>/*.png."""
    from edgetl.data.sample import write_sample_data

    counts = write_sample_data(out_dir, per_class=per_class)
    click.echo(f"wrote {sum(counts.values())} images in {len(counts)} classes to {out_dir}")


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--backbone", default="mobilenetv2", show_default=True, help="mobilenetv2, xception, ...")
@click.option("--alpha", type=float, default=None, help="Width multiplier (MobileNetV2: 0.35 ... 1.4).")
@click.option("--image-size", type=click.IntRange(min=32), default=224, show_default=True)
@click.option(
    "--weights", default="imagenet", show_default=True, help="imagenet, none (train from scratch), or a file."
)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a model already in the run directory.")
@click.option("--quiet", is_flag=True, help="No per-epoch progress.")
@reports_errors
def train(data: Path, out: Path, overwrite: bool, quiet: bool, **options) -> None:
    """Train a classifier on DATA, a folder with one subfolder of images per class."""
    from edgetl.config import TrainConfig
    from edgetl.train.fit import train as train_run

    config = TrainConfig(data_dir=str(data.resolve()), **options)
    result = train_run(config, out, overwrite=overwrite, verbose=not quiet)
    counts = ", ".join(f"{name} {count}" for name, count in result.counts.items())
    click.echo(
        f"trained {config.backbone} on {len(result.class_names)} classes ({counts} images"
        f"{f', {result.skipped} skipped' if result.skipped else ''}) in {result.epochs_run} epochs, "
        f"{result.seconds:.0f} s"
    )
    click.echo(f"test accuracy {result.test_accuracy:.4f}")
    click.echo(f"run written to {result.run.path}")


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--int8", is_flag=True, help="Also write a full-integer int8 TFLite file, calibrated on training images.")
@click.option("--onnx/--no-onnx", default=True, show_default=True, help="Also write an ONNX file.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    default=None,
    help="Fail an export whose top-1 agreement with Keras is lower (default 0.99 float, 0.90 int8).",
)
@reports_errors
def export(run: Path, int8: bool, onnx: bool, calibration_samples: int, min_agreement: float | None) -> None:
    """Export RUN's model to TFLite (and int8, ONNX), then verify each file against Keras."""
    from edgetl.export.exporter import export_run

    formats = ["tflite-float32"] + (["tflite-int8"] if int8 else []) + (["onnx"] if onnx else [])
    records = export_run(run, formats, calibration_samples=calibration_samples, min_agreement=min_agreement)
    click.echo(f"{'format':<16}{'size':>10}  {'in/out':<16}{'agreement':>10}{'top-1':>8}{'keras':>8}  verdict")
    for r in records:
        verdict = "ok" if r.passed else f"FAILED (< {r.min_agreement:.2f})"
        click.echo(
            f"{r.format:<16}{r.size_bytes / 1024:>8.0f}KB  {r.input_dtype + '/' + r.output_dtype:<16}"
            f"{r.agreement:>10.4f}{r.top1:>8.4f}{r.keras_top1:>8.4f}  {verdict}   {Path(run) / r.path}"
        )
    failed = [r.format for r in records if not r.passed]
    if failed:
        raise click.ClickException(f"{', '.join(failed)} disagree with Keras too often; files kept for inspection")


class BenchGroup(click.Group):
    """`edgetl bench RUN ...` runs the default command; `edgetl bench compare ...` the subcommand."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


def bench_outputs(command):
    """The output and gate options `bench run` and `bench compare` share."""
    file = click.Path(dir_okay=False, path_type=Path)
    for option in reversed(
        [
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

    click.echo(format_table(report))
    for path in write_outputs(report, **outputs):
        click.echo(f"written {path}")
    problems = report.errors + failed_gates(report.rows, Gates(**gate_values))
    for line in problems:
        click.echo(f"Error: {line}" if line in report.errors else f"FAILED {line}", err=True)
    if problems:
        sys.exit(1)


def _split_bench_options(options: dict) -> tuple[dict, dict]:
    outputs = {key: options.pop(key) for key in ("json_path", "csv_path", "markdown_path", "plot_path")}
    gate_values = {key: options.pop(key) for key in ("max_accuracy_drop", "min_agreement", "max_p90_ms")}
    return outputs, gate_values


@main.group(cls=BenchGroup)
def bench() -> None:
    """Benchmark formats side by side: `edgetl bench RUN`, `edgetl bench MODEL... --images DIR`,
    `edgetl bench compare A.json B.json`."""


@bench.command("run")
@click.argument("targets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--images", type=click.Path(path_type=Path), help="For model files: class subfolders or file,label CSV.")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True, help="Timed batch-1 calls.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True, help="Throughput batch size.")
@click.option("--settle", is_flag=True, help="Repeat rounds of --runs calls until p50 and p90 stop moving.")
@click.option("--threads", default=None, help="Threads for TFLite and ONNX; several give one row each: 1,2,4.")
@click.option("--remote", "remotes", multiple=True, help="Also bench on this board over SSH (user@host; repeatable).")
@click.option("--ssh-option", "ssh_options", multiple=True, help="Passed to ssh/scp as -o OPTION (repeatable).")
@click.option("--remote-python", default="python3", show_default=True, help="The boards' Python interpreter.")
@click.option("--remote-images", type=click.IntRange(min=1), default=50, show_default=True)
@bench_outputs
@reports_errors
def bench_run_command(
    targets, images, runs, warmup, batch, settle, threads, remotes, ssh_options, remote_python, remote_images, **options
):
    """Benchmark a RUN directory (Keras + every export) or exported .tflite/.onnx files (with --images, no
    TensorFlow needed): accuracy, agreement, latency, throughput, load time, memory, size."""
    from edgetl.benchmark.bench import bench_files, bench_run
    from edgetl.benchmark.device import BenchSettings, parse_threads
    from edgetl.benchmark.remote import SshSettings

    outputs, gate_values = _split_bench_options(options)
    settings = BenchSettings(runs=runs, warmup=warmup, batch=batch, settle=settle)
    ssh = SshSettings(options=tuple(ssh_options), python=remote_python)
    threads_values = parse_threads(threads)
    if len(targets) == 1 and not targets[0].is_file():
        if images is not None:
            raise click.UsageError("--images is for model files; a run directory is benched on its own test split")
        report = bench_run(targets[0], settings, threads_values, tuple(remotes), ssh, remote_images)
    else:
        if images is None:
            raise click.UsageError("model files need --images DIR (class subfolders) or --images FILE.csv")
        report = bench_files(list(targets), images, settings, threads_values, tuple(remotes), ssh)
    finish_bench(report, outputs, gate_values)


@bench.command("compare")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@bench_outputs
@reports_errors
def bench_compare_command(results, **options):
    """Merge `edgetl bench --json` files from several machines into one table; flag rows whose settings differ."""
    from edgetl.benchmark.compare import compare_results

    outputs, gate_values = _split_bench_options(options)
    finish_bench(compare_results(list(results)), outputs, gate_values)


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.option("--threads", type=click.IntRange(min=1), default=None)
@reports_errors
def classify(model: Path, inputs: tuple[str, ...], top_k: int, as_json: bool, threads: int | None) -> None:
    """Classify images (files or folders) with an exported .tflite or .onnx MODEL. Needs no TensorFlow."""
    from edgetl.runtime.classify import classify_files, expand_inputs
    from edgetl.runtime.engine import open_engine

    engine = open_engine(model, threads=threads)
    results = classify_files(engine, expand_inputs(list(inputs)), k=min(top_k, len(engine.labels)))
    for result in results:
        if as_json:
            click.echo(json.dumps(result.to_dict()))
        elif result.error:
            click.echo(f"{result.file}: error: {result.error}", err=True)
        else:
            click.echo(f"{result.file}: " + ", ".join(f"{label} {score:.3f}" for label, score in result.top))
    if any(result.error for result in results):
        sys.exit(1)
