"""The public Python API: `edgetl.train`, `edgetl.export`, `edgetl.bench` (and `edgetl.Classifier`, runtime/).

    import edgetl

    result = edgetl.train("flower_photos", "run", epochs=10, image_size=160)   # -> TrainResult
    exported = edgetl.export("run", formats=["tflite-int8"])                   # -> ExportResult
    report = edgetl.bench("run", threads=[1, 2])                               # -> BenchReport

Each function takes the options of its command as keywords, with the defaults of the command's one defaults object
(`TrainConfig`, `ExportOptions` and `KerasFileOptions`, `BenchSettings`), and returns the object the CLI prints;
`cli.py` maps its flags onto these functions and nothing else. Nothing heavy is imported here at module level.

`edgetl.train` and `edgetl.export` are also the names of subpackages (`edgetl.training.fit`, `edgetl.exporting.onnx`).
Python sets a package's attribute to its subpackage as soon as anything imports one, so a plain function named
`edgetl.train` would be replaced by the module the first time training code is imported. Instead, those two
packages are made callable (`CallablePackage`): `edgetl.train(...)` calls `api.train` whether or not the
subpackage has been imported, and `edgetl.training.fit` still names the module. This keeps the names the tutorials'
users type without renaming the packages every other module imports.
"""

from __future__ import annotations

import importlib
import inspect
import types
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.benchmark.settings import REMOTE_SAMPLE_IMAGES, SshSettings
from edgetl.errors import EdgetlError, UsageError

if TYPE_CHECKING:
    from edgetl.benchmark.result import BenchReport
    from edgetl.exporting.exporter import ExportResult
    from edgetl.training.fit import TrainResult


class CallablePackage(types.ModuleType):
    """A package that is also the API function of its own name: `edgetl.train(...)` is `edgetl.api.train(...)`."""

    def __call__(self, *args, **kwargs):
        return self._function()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        """The function's signature, for help() and a notebook's completion."""
        return inspect.signature(self._function())

    def _function(self):
        return getattr(importlib.import_module(__name__), self.__name__.rpartition(".")[2])


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
    data: str | Path, out: str | Path, *, overwrite: bool = False, verbose: bool = True, **options
) -> TrainResult:
    """Train a classifier on `data` (class folders, train/valid/test folders, labels.csv + images, an .npz, or
    "tfds:NAME") and write the run directory `out`. `options` are `TrainConfig`'s fields (backbone, image_size,
    epochs, weights, fine_tune_epochs, augment, ...), with its defaults; `verbose` prints Keras' epoch lines."""
    from edgetl.config import TrainConfig
    from edgetl.data.options import AugmentConfig, LayoutOptions
    from edgetl.training.fit import train as train_run

    parts = ("data_dir", "layout_options", "augmentation")
    _split_options(options, TrainConfig, LayoutOptions, AugmentConfig, command="edgetl.train", positional=parts)
    source = str(data) if str(data).startswith("tfds:") else str(Path(data).resolve())
    config = TrainConfig.from_options(source, **options)
    return train_run(config, Path(out), overwrite=overwrite, verbose=verbose)


def resume(run: str | Path, *, verbose: bool = True) -> TrainResult:
    """Continue the interrupted training of the run directory `run` from its last checkpoint."""
    from edgetl.training.fit import resume as resume_run

    return resume_run(Path(run), verbose=verbose)


def export(
    source: str | Path,
    formats: str | Sequence[str] | None = None,
    *,
    int8: bool = False,
    onnx: bool = True,
    trust_model: bool = False,
    **options,
) -> ExportResult:
    """Export a run directory's model, or a Keras file edgetl did not train, to `formats` (a list or a comma
    string: tflite-float32, tflite-int8, onnx, ...; default TFLite float32 and ONNX, and their int8 twins with
    `int8=True`) and verify each file against Keras. `options` are `ExportOptions`' fields (calibration_samples,
    min_agreement, io_type, opset, quantizer, int8_fallback) and, for an outside Keras file, `KerasFileOptions`'
    (labels, calibration, out, image_size, normalization). A file below its agreement gate is kept and named in
    `ExportResult.problems`, not raised."""
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
    **settings,
) -> BenchReport:
    """Benchmark one run directory (Keras and every exported file, on its test split), or exported .tflite/.onnx
    files on labelled `images` (class folders or a file,label CSV; no TensorFlow needed). `threads` gives one row
    per thread count; `remotes` (user@host) are benched over SSH too; `labels` and `normalization` describe a
    file from another tool without metadata. `settings` are `BenchSettings`' fields (runs, warmup, batch, settle)."""
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


def sample_data(out: str | Path, per_class: int | None = None) -> dict[str, int]:
    """Write the built-in sample dataset (scikit-learn's handwritten digits) as `out`/<class>/*.png; returns the
    number of images per class."""
    from edgetl.data.sample import write_sample_data

    return write_sample_data(Path(out), per_class=per_class)


__all__ = ["EdgetlError", "bench", "export", "resume", "sample_data", "train"]
