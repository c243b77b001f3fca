"""click's building blocks for the commands in cli.py: flags whose defaults and choices are read from the API's
defaults objects and registries (never retyped), a group of flags per options object a command fills
(AugmentConfig, ExportOptions, KerasFileOptions, BenchSettings, SshSettings), and errors turned into one line.
Imports only click and light modules, so `edgetl --help` stays fast.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from edgetl.benchmark.settings import REMOTE_SAMPLE_IMAGES, BenchSettings, SshSettings
from edgetl.data.options import FLIP_MODES, AugmentConfig
from edgetl.errors import EdgetlError, UsageError
from edgetl.exporting.formats import FORMATS, QUANTIZERS, ExportOptions, KerasFileOptions
from edgetl.exporting.int8 import CONFIDENT_AGREEMENT_TARGET, INT8_FALLBACKS, IO_TYPES, ONNX_INT8_TARGETS
from edgetl.runtime.metadata import NORMALIZATIONS


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


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, refusing NaN and infinity: NaN passes every comparison, so a range alone lets it in."""

    def convert(self, value, param, ctx):
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


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


def default(flag: str, defaults: type, type=None, help: str | None = None):
    """A flag whose default is the field of the same name of `defaults`, the API's defaults object: one home."""
    name = flag.split("/")[0].lstrip("-").replace("-", "_")
    return click.option(flag, type=type, default=getattr(defaults, name), show_default=True, help=help)


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress on the terminal.")
wide_option = click.option("--wide", is_flag=True, help="Every column, however wide the table gets.")
no_report_option = click.option(
    "--no-report", is_flag=True, help="Do not refresh the run's page, RUN/report/index.html (see `edgetl report`)."
)


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
            click.option("--max-accuracy-drop", type=FiniteFloatRange(min=0), help="Fail above this top-1 drop."),
            click.option("--min-agreement", type=FiniteFloatRange(0, 1), help="Fail below this agreement."),
            click.option("--max-p90-ms", type=FiniteFloatRange(min=0, min_open=True), help="Fail above this p90."),
        ]
    ):
        command = option(command)
    return command


def split_bench_options(options: dict) -> tuple[dict, dict]:
    """Take the output options (files to write, --wide) and the gates out of a bench command's options."""
    outputs = {key: options.pop(key) for key in ("json_path", "csv_path", "markdown_path", "plot_path", "wide")}
    gate_values = {key: options.pop(key) for key in ("max_accuracy_drop", "min_agreement", "max_p90_ms")}
    return outputs, gate_values


def stacked(*options):
    """One decorator made of several click options, in the order --help lists them."""

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


KERAS_ONLY = "MODEL.keras only: "
# What `export` needs to know of a Keras file edgetl did not train; KerasFileOptions holds the defaults.
keras_file_flags = stacked(
    click.option("--labels", type=click.Path(path_type=Path), help=KERAS_ONLY + "class names, one per line."),
    click.option(
        "--calibration",
        type=click.Path(path_type=Path),
        help=KERAS_ONLY + "images, a folder per class (named as the labels) or a plain folder (no labels).",
    ),
    click.option("--out", type=click.Path(path_type=Path), help=KERAS_ONLY + "output folder."),
    click.option("--image-size", type=click.IntRange(min=8), default=None, help="MODEL.keras only, if not fixed."),
    default(
        "--normalization",
        KerasFileOptions,
        click.Choice(list(NORMALIZATIONS)),
        KERAS_ONLY + "what input the model expects; edgetl prepends it so exports take raw pixels.",
    ),
    click.option("--trust-model", is_flag=True, help="Load the Keras file without safe mode (runs code stored in it)."),
)

# Where `bench run` also benches over SSH, and how; SshSettings holds the defaults.
remote_flags = stacked(
    click.option(
        "--remote", "remotes", multiple=True, help="Also bench on this board over SSH (user@host; repeatable)."
    ),
    click.option("--ssh-option", "ssh_options", multiple=True, help="Passed to ssh/scp as -o OPTION (repeatable)."),
    click.option(
        "--remote-python", default=SshSettings.python, show_default=True, help="The boards' Python interpreter."
    ),
    click.option("--remote-images", type=click.IntRange(min=1), default=REMOTE_SAMPLE_IMAGES, show_default=True),
)

# The CSV layout's overrides of what it guesses (LayoutOptions' id_column, label_column, images).
csv_layout_flags = stacked(
    click.option("--id-column", default=None, help="CSV layout: the column of image ids (guessed: id, filename, ...)."),
    click.option("--label-column", default=None, help="CSV layout: the column of labels (guessed: label, breed, ...)."),
    click.option("--images", default=None, help="CSV layout: the image folder inside DATA (default train/)."),
)

# Training-time augmentation and its strengths; AugmentConfig holds the defaults.
augment_flags = stacked(
    click.option("--augment", is_flag=True, help="Random flips, rotation, zoom, shifts, brightness, contrast."),
    default("--flip", AugmentConfig, click.Choice(FLIP_MODES)),
    default("--rotation", AugmentConfig, FiniteFloatRange(0, 1), "Fraction of a turn."),
    default("--zoom", AugmentConfig, FiniteFloatRange(0, 1)),
    default("--translation", AugmentConfig, FiniteFloatRange(0, 1)),
    default("--brightness", AugmentConfig, FiniteFloatRange(0, 1)),
    default("--contrast", AugmentConfig, FiniteFloatRange(0, 1)),
)

# How `export` converts, calibrates and verifies; ExportOptions holds the defaults, the registries the choices.
export_option_flags = stacked(
    click.option(
        "--io-type",
        type=click.Choice(IO_TYPES),
        default=None,
        help="Input/output tensor type of the int8 TFLite file [default: "
        + "; ".join(f"{q.io_types[0]} with --quantizer {q.name}" for q in QUANTIZERS.values())
        + "]. MediaPipe and Android tooling take uint8 or float32, not int8.",
    ),
    default(
        "--quantizer",
        ExportOptions,
        click.Choice(list(QUANTIZERS)),
        "Who makes the int8 TFLite file: " + " or ".join(q.description for q in QUANTIZERS.values()) + ".",
    ),
    default(
        "--int8-fallback",
        ExportOptions,
        click.Choice(INT8_FALLBACKS),
        f"When no integer-only recipe reaches --min-agreement (or {CONFIDENT_AGREEMENT_TARGET:.0%} agreement on the "
        "images Keras is confident about), may the most sensitive layers stay in float (none: integer-only, for NPUs "
        "and Edge TPU).",
    ),
    default(
        "--target",
        ExportOptions,
        click.Choice(list(ONNX_INT8_TARGETS)),
        "The CPUs the int8 ONNX file is made for: "
        + "; ".join(f"{name}: {target.description}" for name, target in ONNX_INT8_TARGETS.items())
        + ".",
    ),
    default("--opset", ExportOptions, click.IntRange(min=13), "ONNX opset."),
    default("--calibration-samples", ExportOptions, click.IntRange(min=1)),
    click.option(
        "--min-agreement",
        type=FiniteFloatRange(0, 1),
        default=None,
        help="Fail an export whose top-1 agreement with Keras is lower [default: each format's own, "
        + ", ".join(f"{name} {f.min_agreement}" for name, f in FORMATS.items())
        + "].",
    ),
)

# How `bench` times each file; BenchSettings holds the defaults.
bench_settings_flags = stacked(
    default("--runs", BenchSettings, click.IntRange(min=1), "Timed batch-1 calls."),
    default("--warmup", BenchSettings, click.IntRange(min=0)),
    default("--batch", BenchSettings, click.IntRange(min=1), "Throughput batch size."),
    click.option("--settle", is_flag=True, help="Repeat rounds of --runs calls until p50 and p90 stop moving."),
)
