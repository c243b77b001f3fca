"""Classify image files with an exported model: what `edgetl classify` runs on a device."""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.runtime.engine import Engine
from edgetl.runtime.image import find_images, load_images
from edgetl.runtime.settings import ClassifySettings

UNKNOWN = "unknown"
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Classification:
    file: str
    top: list[tuple[str, float]] = field(default_factory=list)
    label: str | None = None  # top-1, or "unknown" when its score is under the threshold
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {
            "file": self.file,
            "label": self.label,
            "top": [{"label": label, "score": score} for label, score in self.top],
        }


@dataclass(frozen=True)
class MissingInput:
    """An input that named nothing to classify: reported per input, the others go on."""

    text: str
    reason: str


def expand_inputs(inputs: Iterable[str]) -> Iterator[Path | MissingInput]:
    """Files as given; folders as the image files below them (sorted); glob patterns expanded (sorted).

    A folder below an input that cannot be listed, or an input that cannot be looked at, is reported as its own
    MissingInput instead of vanishing from the results.
    """
    for item in inputs:
        path = Path(item)
        try:
            is_folder = path.is_dir()
            exists = is_folder or path.exists()
        except OSError as error:  # a folder on the path denies access
            yield MissingInput(item, f"cannot be looked at ({error.strerror or error})")
            continue
        if is_folder:
            found, unlisted = find_images(path)
            yield from (MissingInput(str(folder), reason) for folder, reason in unlisted)
            if not found and not unlisted:
                yield MissingInput(item, "folder holds no image files")
            yield from found
        elif not exists and GLOB_CHARACTERS & set(item):
            matches = sorted(Path(match) for match in glob.glob(item, recursive=True))
            files = [match for match in matches if match.is_file()]
            if not files:
                yield MissingInput(item, "no file matches this pattern")
            yield from files
        else:
            yield path  # a missing or unreadable file becomes a per-file error when it is decoded


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(labels[i], float(probabilities[i])) for i in order]


def _batches(items: Iterable[Path | MissingInput], size: int) -> Iterator[list[Path | MissingInput]]:
    batch: list[Path | MissingInput] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def classify_stream(
    engine: Engine,
    inputs: Iterable[Path | MissingInput],
    k: int = ClassifySettings.top_k,
    threshold: float = ClassifySettings.threshold,
    batch_size: int = ClassifySettings.batch_size,
) -> Iterator[Classification]:
    """One result per input, in order, as soon as its batch is done; unreadable files get an error result."""
    k = min(k, len(engine.labels))
    for batch in _batches(inputs, batch_size):
        paths = [item for item in batch if isinstance(item, Path)]
        pixels, kept, errors = load_images(paths, engine.input_size, engine.metadata.resize)
        probabilities = engine.predict(pixels) if len(pixels) else np.zeros((0, len(engine.labels)))
        by_path_index = dict(zip(kept, probabilities, strict=True))
        failed = iter(errors)
        path_index = 0
        for item in batch:
            if isinstance(item, MissingInput):
                yield Classification(item.text, error=f"{item.text}: {item.reason}")
                continue
            if path_index in by_path_index:
                top = top_k(by_path_index[path_index], engine.labels, k)
                label = top[0][0] if top[0][1] >= threshold else UNKNOWN
                yield Classification(str(item), top, label)
            else:
                yield Classification(str(item), error=str(next(failed)))
            path_index += 1
