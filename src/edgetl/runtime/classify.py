"""Classify image files with an exported model: what `edgetl classify` runs on a device."""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgetl.runtime.bounds import check_batch, check_share
from edgetl.runtime.engine import Engine
from edgetl.runtime.image import find_images, glob_without_loops, load_images
from edgetl.runtime.settings import ClassifySettings

UNKNOWN = "unknown"
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux: a longer line of a path list names no file
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
        if isinstance(item, MissingInput):  # an entry of a list that named no path (read_path_list)
            yield item
            continue
        if "\0" in item:  # no file name holds one; os calls would refuse the whole input with a ValueError
            yield MissingInput(item.replace("\0", "\\0"), "holds a NUL byte, which no file name can")
            continue
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
            if "**" in item.split("/"):
                matches = glob_without_loops(item)
            else:
                matches = sorted(Path(match) for match in glob.glob(item))
            files = [match for match in matches if match.is_file()]
            if not files:
                yield MissingInput(item, "no file matches this pattern")
            yield from files
        else:
            yield path  # a missing or unreadable file becomes a per-file error when it is decoded


def read_path_list(stream: BinaryIO, name: str = "standard input") -> Iterator[str | MissingInput]:
    """Paths from a list, one per line, read in bounded pieces: a line longer than any path, or one that is not
    UTF-8 text, is that entry's error and the other entries go on; a stream without newlines never grows past
    one path's length in memory."""
    number = 0
    while True:
        line = stream.readline(MAX_PATH_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_PATH_BYTES and not line.endswith(b"\n"):
            while (rest := stream.readline(MAX_PATH_BYTES + 1)) and not rest.endswith(b"\n"):
                pass  # the rest of that line is skipped in pieces, never held whole
            yield MissingInput(f"{name} line {number}", f"longer than {MAX_PATH_BYTES} bytes, no path; skipped")
            continue
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError as error:
            yield MissingInput(f"{name} line {number}", f"not UTF-8 text ({error.reason}); skipped")
            continue
        if text:
            yield text


def paths_with_stdin(inputs: Iterable[str]) -> Iterator[str | MissingInput]:
    """The inputs, with `-` replaced by the paths read from standard input, one per line."""
    for item in inputs:
        if item == "-":
            yield from read_path_list(sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin)
        else:
            yield item


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
    check_share(threshold, "--threshold")
    check_batch(batch_size, engine.input_size, "--batch-size")
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
