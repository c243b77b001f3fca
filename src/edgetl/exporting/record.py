"""What `edgetl export` records of each file in exports.json, and how a verified file becomes that record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgetl.exporting.formats import ExportFormat, ExportOptions, clients_for
from edgetl.exporting.int8 import ONNX_INT8_TARGETS, LadderResult
from edgetl.exporting.verify import UNLABELLED, Fidelity
from edgetl.exporting.written import Loaded

if TYPE_CHECKING:
    from edgetl.exporting.source import ExportSource


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
    runtimes: list[str] = field(default_factory=list)  # the tools that load the file as it is (`clients_for`)
    # Where the figures were measured, each entry with its own: first the runtime the figures above come from,
    # opened with its default options as any program opens the file, then every other program run on the same
    # images (exporting/consumers.py); each with the CPU class (runtime/cpu.py), since int8 results may differ.
    verified_on: list[dict] = field(default_factory=list)
    target: str = ""  # int8 ONNX: the CPUs it is made for (int8.ONNX_INT8_TARGETS)
    saturates_on: list[str] = field(default_factory=list)  # CPU classes on which its results differ (its target's)
    # per flipped file (as `flipped_files`): its label and Keras' and the file's top classes with probabilities
    flipped_images: list[dict] = field(default_factory=list)


def flipped_images(source: ExportSource, fidelity: Fidelity) -> list[dict]:
    """What `edgetl report` shows of each flipped image: the file, its label (None when unlabelled), and the top
    classes of Keras and of the file as [class name, probability] pairs."""
    names = source.metadata.labels
    images = []
    for index, keras_top, export_top in zip(
        fidelity.flipped, fidelity.flipped_keras_top, fidelity.flipped_export_top, strict=True
    ):
        label = int(source.verification.labels[index])
        images.append(
            {
                "file": str(source.verification.examples[index].path),
                "label": names[label] if label != UNLABELLED else None,
                "keras_top": [[names[c], p] for c, p in keras_top],
                "export_top": [[names[c], p] for c, p in export_top],
            }
        )
    return images


def quantizer_of(export_format: ExportFormat, options: ExportOptions) -> str:
    return options.quantizer if export_format.quantized_by == "--quantizer" else export_format.quantized_by


@dataclass
class Verified:
    """A file written and checked against Keras."""

    path: Path
    size: int
    sha256: str
    loaded: Loaded
    fidelity: Fidelity
    problems: list[str]
    passed: bool


def make_record(
    name: str,
    export_format: ExportFormat,
    verified: Verified,
    ladder: LadderResult | None,
    source: ExportSource,
    gate: float,
    options: ExportOptions,
    verified_on: list[dict] | None = None,
) -> ExportRecord:
    """The record of a written and verified file; `ladder` is the int8 recipe climb that made it, if any;
    `verified_on`, where its figures were measured (exporter.consumer_figures)."""
    fidelity, ops = verified.fidelity, verified.loaded.ops
    target = options.target if "target" in export_format.takes else ""
    return ExportRecord(
        format=name,
        path=str(verified.path.relative_to(source.root)),
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
        quantizer=quantizer_of(export_format, options),
        problems=verified.problems,
        confident_images=fidelity.confident_images,
        confident_agreement=fidelity.confident_agreement,
        mean_probability_diff=round(fidelity.mean_probability_diff, 6),
        recipe=ladder.recipe.name if ladder else "",
        float_layers=list(ladder.recipe.float_layers) if ladder else [],
        attempts=[asdict(attempt) for attempt in ladder.attempts] if ladder else [],
        runtimes=clients_for(export_format.kind, verified.loaded.input_dtype),
        verified_on=verified_on or [],
        target=target,
        saturates_on=list(ONNX_INT8_TARGETS[target].saturates_on) if target else [],
        flipped_images=flipped_images(source, fidelity),
    )
