"""Classifiers other tools wrote: what edgetl needs to run one (labels, input size, how pixels become input) from
the standard TFLite metadata it carries (Model Maker, MediaPipe), or from the user's flags when it carries none.

edgetl's own files say all of it in their edgetl metadata and take raw pixels; another tool's file may expect
normalised floats, or raw uint8 pixels (a quantised model: MediaPipe and the Task Library feed those as they are).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from edgetl.errors import DataError, EdgetlError, ModelFileError
from edgetl.runtime.metadata import MAX_METADATA_BYTES, NORMALIZATIONS, ModelMetadata, Normalization

LABELS_HINT = "--labels FILE (class names, one per line, in the model's output order)"
NORMALIZATION_HINT = f"--normalization {'|'.join(NORMALIZATIONS)}"


@dataclass(frozen=True)
class ModelFlags:
    """What the user says about a model file that does not say it itself (`--labels`, `--normalization`)."""

    labels: Path | None = None
    normalization: str | None = None
    # Several files at once (bench): the flags describe those that carry nothing, the others keep their own.
    where_missing: bool = False

    @property
    def given(self) -> list[str]:
        return [flag for flag, value in (("--labels", self.labels), ("--normalization", self.normalization)) if value]


@dataclass(frozen=True)
class TensorShapes:
    """The model's first input (batch, height, width, channels as NHWC) and the number of classes it outputs."""

    height: int
    width: int
    classes: int
    uint8_input: bool  # a quantised model's uint8 input takes raw pixels as they are (as MediaPipe feeds it)


def read_labels(path: Path) -> list[str]:
    """Class names, one per line, in the model's output order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such labels file (one class name per line, in the model's output order)")
    try:
        with open(path, "rb") as handle:  # at most the metadata's cap: a labels file is never read whole past it
            data = handle.read(MAX_METADATA_BYTES + 1)
        if len(data) > MAX_METADATA_BYTES:
            raise DataError(f"{path}: over {MAX_METADATA_BYTES} bytes, more than the labels of any classifier")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the labels file ({error})") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) < 2:
        raise DataError(f"{path}: holds {len(labels)} label(s); a classifier needs two or more, one per line")
    if len(set(labels)) != len(labels):
        raise DataError(f"{path}: a label appears twice; each line must name a different class")
    return labels


def metadata_normalization(
    path: Path, mean: tuple[float, ...] | None, std: tuple[float, ...] | None
) -> Normalization | None:
    """The NormalizationOptions of a file's standard metadata ((x - mean) / std, one value or one per RGB
    channel), checked; None when it gives none."""
    if mean is None or std is None:
        return None
    if len(mean) not in (1, 3) or len(std) not in (1, 3):
        raise ModelFileError(
            f"{path}: its TFLite metadata normalises with {len(mean)} mean and {len(std)} std values; expected 1 or 3"
        )
    mean, std = (tuple(float(v) for v in (values * 3 if len(values) == 1 else values)) for values in (mean, std))
    if min(std) <= 0:
        raise ModelFileError(f"{path}: its TFLite metadata normalises with std {list(std)}; must be > 0")
    return Normalization("metadata", mean=mean, std=std)


def refuse_flags_for_edgetl_file(path: Path, flags: ModelFlags) -> None:
    if flags.given and not flags.where_missing:
        raise EdgetlError(
            f"{' and '.join(flags.given)}: {path} is an edgetl file, which carries its labels and takes raw pixels; "
            f"omit {' and '.join(flags.given)}"
        )


def describe_foreign_model(
    path: Path,
    shapes: TensorShapes,
    flags: ModelFlags,
    labels: list[str] | None = None,
    normalization: Normalization | None = None,
    what_it_carries: str = "no metadata",
) -> ModelMetadata:
    """The metadata edgetl runs a foreign model with. `labels` and `normalization` are what the file says (its
    standard TFLite metadata), None where it says nothing; the flags fill in only what the file does not say."""
    if labels is not None and flags.labels is not None and not flags.where_missing:
        raise EdgetlError(f"--labels: {path} carries its own labels ({what_it_carries}); omit --labels")
    if normalization is not None and flags.normalization is not None and not flags.where_missing:
        raise EdgetlError(f"--normalization: {path} says how to normalise its input ({what_it_carries}); omit it")
    labels_source = path
    if labels is None:
        if flags.labels is None:
            raise ModelFileError(f"{path}: carries no labels ({what_it_carries}); give {LABELS_HINT}")
        labels, labels_source = read_labels(flags.labels), flags.labels
    if len(labels) != shapes.classes:
        raise ModelFileError(
            f"{labels_source}: names {len(labels)} classes, but {path.name} outputs {shapes.classes} scores per image"
        )
    if shapes.uint8_input:
        if flags.normalization is not None and not flags.where_missing:
            raise EdgetlError(f"--normalization: {path} takes uint8 input, which is fed raw pixels; omit it")
        normalization = NORMALIZATIONS["raw"]
    if normalization is None:
        if flags.normalization is None:
            raise ModelFileError(
                f"{path}: does not say how pixels are normalised for its input ({what_it_carries}); "
                f"give {NORMALIZATION_HINT}"
            )
        if flags.normalization not in NORMALIZATIONS:
            raise EdgetlError(
                f"--normalization {flags.normalization}: unknown; choose one of {', '.join(NORMALIZATIONS)}"
            )
        normalization = NORMALIZATIONS[flags.normalization]
    return ModelMetadata(
        labels=list(labels),
        input_size=(shapes.height, shapes.width),
        normalization=replace(normalization, inside_model=False),
        extra={"foreign": what_it_carries},
    )
