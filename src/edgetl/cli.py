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
@click.argument("data", required=False)
@click.option("--out", "out", type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--resume", "resume", type=click.Path(path_type=Path), help="Continue the interrupted run RUN.")
@click.option(
    "--layout",
    type=click.Choice(["auto", "folder", "presplit", "csv", "npz", "tfds"]),
    default="auto",
    show_default=True,
    help="How DATA is organised (auto recognises it).",
)
@click.option("--id-column", default=None, help="CSV layout: the column of image ids (guessed: id, filename, ...).")
@click.option("--label-column", default=None, help="CSV layout: the column of labels (guessed: label, breed, ...).")
@click.option("--images", default=None, help="CSV layout: the image folder inside DATA (default train/).")
@click.option("--backbone", default="mobilenetv2", show_default=True, help="mobilenetv2, xception, ...")
@click.option("--alpha", type=float, default=None, help="Width multiplier (MobileNetV2: 0.35 ... 1.4).")
@click.option("--image-size", type=click.IntRange(min=32), default=224, show_default=True)
@click.option(
    "--weights", default="imagenet", show_default=True, help="imagenet, none (train from scratch), or a file."
)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Stage 1 epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True)
@click.option("--hidden-units", type=click.IntRange(min=0), default=0, show_default=True, help="Hidden dense layer.")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--fine-tune-epochs", type=click.IntRange(min=0), default=0, show_default=True, help="Stage 2 epochs.")
@click.option("--fine-tune-layers", type=click.IntRange(min=1), default=None, help="Stage 2 unfreezes the top K.")
@click.option("--fine-tune-from", default=None, help="Stage 2 unfreezes from this backbone layer up.")
@click.option(
    "--fine-tune-learning-rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Default lr/10."
)
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True)
@click.option("--augment", is_flag=True, help="Random flips, rotation, zoom, shifts, brightness, contrast.")
@click.option(
    "--flip",
    type=click.Choice(["horizontal", "vertical", "horizontal_and_vertical", "none"]),
    default="horizontal",
    show_default=True,
)
@click.option("--rotation", type=click.FloatRange(0, 1), default=0.1, show_default=True, help="Fraction of a turn.")
@click.option("--zoom", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--translation", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--brightness", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--contrast", type=click.FloatRange(0, 1), default=0.1, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a model already in the run directory.")
@click.option("--quiet", is_flag=True, help="No per-epoch progress.")
@reports_errors
def train(data: str | None, out: Path | None, resume: Path | None, overwrite: bool, quiet: bool, **options) -> None:
    """Train a classifier on DATA: class folders, train/valid/test folders, labels.csv + images, an .npz, or
    tfds:NAME. `--resume RUN` continues an interrupted run instead."""
    from edgetl.config import TrainConfig
    from edgetl.train.fit import resume as resume_run
    from edgetl.train.fit import train as train_run

    if resume is not None:
        if data is not None or out is not None:
            raise click.UsageError("--resume RUN takes no DATA or --out: the run remembers them")
        result = resume_run(resume, verbose=not quiet)
    else:
        if data is None or out is None:
            raise click.UsageError("give DATA and --out RUN (or --resume RUN)")
        source = data if data.startswith("tfds:") else str(Path(data).resolve())
        result = train_run(TrainConfig(data_dir=source, **options), out, overwrite=overwrite, verbose=not quiet)
    config = result.run.read_config()
    counts = ", ".join(f"{name} {count}" for name, count in result.counts.items())
    stages = " + ".join(f"{epochs}" for epochs in result.epochs.values() if epochs)
    click.echo(
        f"trained {config.backbone} on {len(result.class_names)} classes ({result.layout} layout; {counts} images) "
        f"in {stages} epochs{' (stage 1 on cached features)' if result.feature_cache else ''}, "
        f"{result.seconds:.0f} s"
    )
    if result.skipped:
        click.echo(f"skipped {result.skipped} unreadable image file(s) (listed in {result.run.metrics})")
    click.echo(f"test accuracy {result.test_accuracy:.4f}")
    click.echo(f"run written to {result.run.path} (reports in {result.run.path / 'report'})")


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


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write rows as JSON.")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads for TFLite and ONNX.")
@reports_errors
def bench(run: Path, json_path: Path | None, runs: int, warmup: int, threads: int | None) -> None:
    """Benchmark the Keras model and every export of RUN: accuracy, agreement, latency, size."""
    from edgetl.benchmark.bench import bench_run
    from edgetl.run import atomic_write

    rows = bench_run(run, runs=runs, warmup=warmup, threads=threads)
    click.echo(f"{'format':<16}{'size':>10}{'top-1':>8}{'agree':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}  runtime")
    for row in rows:
        latency = row.latency
        click.echo(
            f"{row.format:<16}{row.size_bytes / 1024:>8.0f}KB{row.top1:>8.4f}{row.agreement:>8.4f}"
            f"{latency.p50:>9.3f}{latency.p90:>9.3f}{latency.p99:>9.3f}  {row.runtime}"
        )
    if json_path is not None:
        atomic_write(json_path, json.dumps([row.to_dict() for row in rows], indent=1))
        click.echo(f"rows written to {json_path}")


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
