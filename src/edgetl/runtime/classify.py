"""Classify image files with an exported model: what `edgetl classify` runs on a device."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.errors import DataError
from edgetl.runtime.engine import Engine
from edgetl.runtime.image import is_image_file, load_image


@dataclass(frozen=True)
class Classification:
    file: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "top": [{"label": label, "score": score} for label, score in self.top]}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given, folders as the image files below them (sorted), in the order given."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if is_image_file(p))
            if not found:
                raise DataError(f"{path}: folder holds no image files")
            paths.extend(found)
        else:
            paths.append(path)
    return paths


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(labels[i], float(probabilities[i])) for i in order]


def classify_files(engine: Engine, paths: list[Path], k: int = 3) -> list[Classification]:
    """One result per file; a file that cannot be read gets an error result and the rest go on."""
    results = []
    for path in paths:
        try:
            pixels = load_image(path, engine.input_size, engine.metadata.resize)
        except DataError as error:
            results.append(Classification(str(path), error=str(error)))
            continue
        probabilities = engine.predict(pixels[np.newaxis])[0]
        results.append(Classification(str(path), top_k(probabilities, engine.labels, k)))
    return results
