"""The public Python API: `edgetl.train`, `edgetl.resume`, `edgetl.export`, `edgetl.bench`, `edgetl.report`,
`edgetl.tune`, `edgetl.sample_data` (re-exported by `edgetl/__init__.py`; `edgetl.Classifier` for on-device code is in
runtime/classifier.py).

    import edgetl

    result = edgetl.train("flower_photos", "run", epochs=10, image_size=160)   # -> TrainResult
    exported = edgetl.export("run", formats=["tflite-int8"])                   # -> ExportResult
    report = edgetl.bench("run", threads=[1, 2])                               # -> BenchReport
    page = edgetl.report("run")                                                # -> ReportPage
    found = edgetl.tune("flower_photos", "search", max_latency_ms=30)          # -> TuneResult

Each function takes the options of its command as keywords, with the defaults of the command's defaults objects
(`TrainConfig` and the option objects it is composed of, `ExportOptions` and `KerasFileOptions`, `BenchSettings`),
and returns the object the CLI prints; `cli.py` maps its flags onto these functions and nothing else. They are
plain functions (the packages they drive are nouns: `edgetl.training`, `edgetl.exporting`, `edgetl.benchmark`,
`edgetl.reporting`),
and nothing heavy is imported here at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.benchmark.settings import REMOTE_SAMPLE_IMAGES, SshSettings
from edgetl.config import TrainConfig
from edgetl.errors import EdgetlError, UsageError
from edgetl.tuning.settings import TuneSettings

if TYPE_CHECKING:
    from edgetl.benchmark.result import BenchReport
    from edgetl.exporting.exporter import ExportResult
    from edgetl.reporting.page import ReportPage
    from edgetl.training.fit import TrainResult
    from edgetl.tuning.session import TuneResult


def _split_options(options: dict, *dataclasses: type, command: str, positional: tuple[str, ...] = ()) -> list[dict]:
    """`options` shared out among the dataclasses whose fields they name (but those given as arguments of their own,
    `positional`); an unknown one is an error naming all."""
    names = [[f.name for f in fields(cls) if f.name not in positional] for cls in dataclasses]
    unknown = [key for key in options if not any(key in known for known in names)]
    if unknown:
        valid = ", ".join(sorted(name for known in names for name in known))
        raise UsageError(f"{command}: unknown option {unknown[0]!r}; the options are {valid}")
    return [{key: value for key, value in options.items() if key in known} for known in names]


def train(
    data: str | Path, out: str | Path, *, overwrite: bool = False, verbose: bool = True, **options: Any
) -> TrainResult:
    """Train a classifier on `data` and write the run directory `out`.

    Args:
        data: Class folders, train/valid/test folders, labels.csv with images, an .npz file, or "tfds:NAME".
        out: The run directory to write: model.keras, labels, split, config, reports (see `RunDir`).
        overwrite: Replace a model already in `out` (and its exports).
        verbose: Print Keras' epoch lines.
        **options: `TrainConfig`'s fields and those of the option objects it is composed of (`LayoutOptions`,
            `AugmentConfig`), flat and with their defaults: backbone, image_size, epochs, weights,
            fine_tune_epochs, augment, rotation, seed, ...

    Returns:
        The run, its classes, the test accuracy, the image counts and the time each stage took.

    Raises:
        UsageError: An option that is not one of the above (the message names the valid ones).
        EdgetlError: Unusable data, weights or output folder.
    """
    from edgetl.config import TrainConfig
    from edgetl.data.options import AugmentConfig, LayoutOptions
    from edgetl.training.fit import train as train_run

    parts = ("data_dir", "layout_options", "augmentation")
    _split_options(options, TrainConfig, LayoutOptions, AugmentConfig, command="edgetl.train", positional=parts)
    source = str(data) if str(data).startswith("tfds:") else str(Path(data).resolve())
    config = TrainConfig.from_options(source, **options)
    return train_run(config, Path(out), overwrite=overwrite, verbose=verbose)


def resume(run: str | Path, *, verbose: bool = True) -> TrainResult:
    """Continue the interrupted training of a run directory from its last checkpoint.

    Args:
        run: The run directory `train` was writing when it stopped.
        verbose: Print Keras' epoch lines.

    Returns:
        The finished run, as `train` returns it.
    """
    from edgetl.training.fit import resume as resume_run

    return resume_run(Path(run), verbose=verbose)


def export(
    source: str | Path,
    formats: str | Sequence[str] | None = None,
    *,
    int8: bool = False,
    onnx: bool = True,
    trust_model: bool = False,
    **options: Any,
) -> ExportResult:
    """Export a run directory's model, or a Keras file edgetl did not train, and verify each file against Keras.

    Args:
        source: A run directory, or a .keras file.
        formats: A list or a comma string of `FORMATS` names (tflite-float32, tflite-int8, onnx, ...); default
            TFLite float32 and ONNX, and their int8 twins with `int8=True`.
        int8: Without `formats`, also write the int8 TFLite (and ONNX) files.
        onnx: Without `formats`, write ONNX files too.
        trust_model: Load a Keras file without safe mode (runs code stored in it).
        **options: `ExportOptions`' fields (calibration_samples, min_agreement, io_type, opset, quantizer,
            int8_fallback) and, for an outside Keras file, `KerasFileOptions`' (labels, calibration, out,
            image_size, normalization).

    Returns:
        The folder written and one record per format (agreement, size, recipe, ...). A file below its agreement
        gate is kept and named in `ExportResult.problems`, not raised.
    """
    from edgetl.exporting.exporter import export_any
    from edgetl.exporting.formats import ExportOptions, KerasFileOptions, default_formats

    export_options, keras_file = _split_options(options, ExportOptions, KerasFileOptions, command="edgetl.export")
    if isinstance(formats, str):
        formats = [name.strip() for name in formats.split(",") if name.strip()]
    chosen = list(formats) if formats is not None else default_formats(int8, onnx)
    return export_any(
        Path(source), chosen, ExportOptions(**export_options), KerasFileOptions(**keras_file), trust_model
    )


def bench(
    *targets: str | Path,
    images: str | Path | None = None,
    threads: int | Sequence[int | None] | None = None,
    remotes: Sequence[str] = (),
    ssh_options: Sequence[str] = (),
    remote_python: str = SshSettings.python,
    remote_images: int = REMOTE_SAMPLE_IMAGES,
    labels: str | Path | None = None,
    normalization: str | None = None,
    **settings: Any,
) -> BenchReport:
    """Benchmark a run directory's Keras model and every export, or exported files on labelled images.

    Args:
        *targets: One run directory (benched on its test split), or .tflite/.onnx files (no TensorFlow needed).
        images: For model files: class folders, or a CSV of file,label rows.
        threads: A thread count, or several for one row each (None: the runtime's default).
        remotes: Boards (user@host) to bench on over SSH too.
        ssh_options: Passed to ssh and scp as `-o OPTION`.
        remote_python: The boards' Python interpreter.
        remote_images: How many test images are copied to each board.
        labels: For a model file without metadata: a file of class names, one per line, in output order.
        normalization: For a model file without metadata: what its float input expects (raw, tf, torch, caffe).
        **settings: `BenchSettings`' fields (runs, warmup, batch, settle).

    Returns:
        One row per format and thread count (accuracy, agreement, latency, throughput, memory, size), with the
        errors of the rows that could not be measured.
    """
    from edgetl.benchmark.bench import bench_files, bench_run
    from edgetl.benchmark.settings import BenchSettings
    from edgetl.runtime.foreign import ModelFlags

    (bench_settings,) = _split_options(settings, BenchSettings, command="edgetl.bench")
    if not targets:
        raise UsageError("give a run directory, or model files and images")
    paths = [Path(target) for target in targets]
    threads_values = [threads] if threads is None or isinstance(threads, int) else list(threads)
    flags = ModelFlags(Path(labels) if labels else None, normalization, where_missing=True)
    ssh = SshSettings(options=tuple(ssh_options), python=remote_python)
    if len(paths) == 1 and not paths[0].is_file():
        if images is not None or flags.given:
            given = "--images" if images is not None else flags.given[0]
            raise UsageError(f"{given} is for model files; a run directory is benched on its own test split")
        return bench_run(paths[0], BenchSettings(**bench_settings), threads_values, tuple(remotes), ssh, remote_images)
    if images is None:
        raise UsageError("model files need --images DIR (class subfolders) or --images FILE.csv")
    return bench_files(paths, Path(images), BenchSettings(**bench_settings), threads_values, tuple(remotes), ssh, flags)


def report(run: str | Path) -> ReportPage:
    """Write `run`/report/index.html: one self-contained page of a run directory or an outside model's export folder.

    The page inlines its images, style and script (it makes no request) and has the sections the folder's files
    allow: dataset, training, evaluation, exports, the images each file flipped, benchmarks.

    Args:
        run: A run directory, or the folder `export` wrote for an outside Keras file.

    Returns:
        The page's path, its size and the time taken.
    """
    from edgetl.reporting.page import write_report

    return write_report(Path(run))


def tune(
    data: str | Path | None,
    out: str | Path,
    *,
    resume: bool = False,
    max_latency_ms: float | None = None,
    percentile: str = TuneSettings.percentile,
    max_size_mb: float | None = None,
    max_memory_mb: float | None = None,
    format: str = TuneSettings.format,
    threads: int | None = None,
    remotes: Sequence[str] = (),
    ssh_options: Sequence[str] = (),
    remote_python: str = SshSettings.python,
    space: str | None = None,
    budget_minutes: float = TuneSettings.budget_minutes,
    epochs: int = TrainConfig.epochs,
    fine_tune_epochs: int = TrainConfig.fine_tune_epochs,
    weights: str = TrainConfig.weights,
    finalists: int = TuneSettings.finalists,
    eta: int = TuneSettings.eta,
    exhaustive: bool = False,
    **train_options: Any,
) -> TuneResult:
    """Find the most accurate classifier of `data` whose file meets the budget, measured on the target device.

    Every candidate of the space gets its untrained file in `format` built and timed (here, and on each board of
    `remotes`): those over the budget are dropped before any training. The rest train stage 1 with successive
    halving; the best `finalists` train in full, are exported and verified as `edgetl export` does, and are timed
    again. The most accurate that still fits is the winner: an ordinary run directory, `out`/winner.

    Args:
        data: The training data, as `train` takes it (None with `resume`).
        out: The search's folder: tune.json (every candidate, its figures, why it was dropped), pareto.svg,
            runs/, probes/ and winner/.
        resume: Continue the interrupted search in `out`, with the options it recorded (give no others).
        max_latency_ms: The budget of one image's latency (batch 1), at `percentile`, on every machine timed.
        percentile: p50 or p90.
        max_size_mb: The budget of the file's size.
        max_memory_mb: The budget of the peak memory of a process that loads and runs the file.
        format: The target format, an `edgetl export` format of a single .tflite or .onnx file.
        threads: Threads the runtime runs on (None: its default).
        remotes: Boards (user@host) the files are timed on over SSH too; the budget must hold on each.
        ssh_options: Passed to ssh and scp as `-o OPTION`.
        remote_python: The boards' Python interpreter.
        space: Narrows the search space: "backbone=mobilenetv2;alpha=0.35,0.5;size=96,128;hidden=0,128"
            (a key left out keeps every choice of the registries).
        budget_minutes: Time for probing and halving; when it is spent, the best candidate so far is finished.
        epochs: Stage 1 epochs of the full training (the last rung of the halving).
        fine_tune_epochs: Stage 2 epochs of the finalists (needs pretrained weights).
        weights: imagenet, none (every backbone from scratch), or a weights file (candidates it does not fit are
            dropped).
        finalists: How many candidates are trained in full, exported and timed again.
        eta: Successive halving keeps the best 1/eta of each rung and trains them eta times longer.
        exhaustive: No halving: every candidate that fits is trained in full (the reference a search is held to).
        **train_options: Other `train` options for every candidate (batch_size, learning_rate, seed, layout, ...).

    Returns:
        The search's folder, its state (every candidate) and the plot; `winner_run` is the winner's run.

    Raises:
        UsageError: An option that is not one of the above, or options given with `resume`.
        EdgetlError: A bad space, unreachable board, unusable data or weights; no candidate meets the budget (the
            message ends with the table of what was measured); the search interrupted (resume it).
    """
    from pydantic import ValidationError

    from edgetl.schemas import one_line
    from edgetl.tuning import session
    from edgetl.tuning.result import Constraints, TuneOptions

    if resume:
        if data is not None or train_options:
            raise UsageError("resume=True continues the search in `out` with the options it recorded; give no others")
        return session.resume(Path(out))
    if data is None:
        raise UsageError("give the training data (or resume=True to continue the search in `out`)")
    from edgetl.data.options import AugmentConfig, LayoutOptions

    _split_options(
        train_options, TrainConfig, LayoutOptions, AugmentConfig, command="edgetl.tune", positional=SEARCH_OWNS
    )
    if any(not isinstance(value, str | int | float | bool | None) for value in train_options.values()):
        raise UsageError("edgetl.tune: train options are plain values (numbers, strings, booleans)")
    source = str(data) if str(data).startswith("tfds:") else str(Path(data).resolve())
    try:
        constraints = Constraints(
            max_latency_ms=max_latency_ms, percentile=percentile, max_size_mb=max_size_mb, max_memory_mb=max_memory_mb
        )
    except ValidationError as error:
        raise UsageError(one_line(error, "edgetl.tune", "the constraint")) from None
    try:
        tune_options = TuneOptions(
            format=format,
            threads=threads,
            remotes=list(remotes),
            ssh_options=list(ssh_options),
            remote_python=remote_python,
            space=space or "",
            budget_minutes=budget_minutes,
            epochs=epochs,
            fine_tune_epochs=fine_tune_epochs,
            weights=weights,
            finalists=finalists,
            eta=eta,
            seed=int(train_options.get("seed", LayoutOptions.seed)),
            exhaustive=exhaustive,
            train_options=dict(train_options),
        )
    except ValidationError as error:
        raise UsageError(one_line(error, "edgetl.tune", "the option")) from None
    return session.start(source, Path(out), constraints, tune_options)


# The TrainConfig fields `tune` sets per candidate (or takes as its own arguments): not train options.
SEARCH_OWNS = (
    "data_dir", "layout_options", "augmentation", "backbone", "alpha", "image_size", "hidden_units", "epochs",
    "fine_tune_epochs", "weights",
)  # fmt: skip


def sample_data(out: str | Path, per_class: int | None = None) -> dict[str, int]:
    """Write the built-in sample dataset (scikit-learn's handwritten digits) as `out`/<class>/*.png.

    Args:
        out: The folder to write, one subfolder per class.
        per_class: Images per class (at least 3); None writes all.

    Returns:
        The number of images written per class.
    """
    from edgetl.data.sample import write_sample_data

    return write_sample_data(Path(out), per_class=per_class)


__all__ = ["EdgetlError", "bench", "export", "report", "resume", "sample_data", "train", "tune"]
