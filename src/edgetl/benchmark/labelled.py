"""Labelled images for the device bench: class subfolders or a CSV of `file,label` rows, decoded like `classify`."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from edgetl.data.folder import class_folders
from edgetl.errors import DataError, csv_problem
from edgetl.progress import step
from edgetl.runtime.image import load_images

log = logging.getLogger(__name__)


def labelled_images(source: Path) -> list[tuple[Path, str]]:
    """(image file, label name) from a folder of class subfolders or a CSV file of `file,label` rows."""
    source = Path(source)
    if source.is_dir():
        pairs = [(file, name) for name, files in class_folders(source) for file in files]
        if not pairs:
            raise DataError(f"{source}: no images in class subfolders (expected {source}/<label>/<image>)")
        return pairs
    if source.is_file() and source.suffix.lower() == ".csv":
        try:
            with source.open(newline="", encoding="utf-8") as handle:
                rows = [row for row in csv.reader(handle) if row and not row[0].startswith("#")]
        except (UnicodeDecodeError, csv.Error) as error:
            raise DataError(f"{source}: cannot be read as a UTF-8 CSV file ({csv_problem(error)})") from None
        if rows and rows[0][:2] == ["file", "label"]:
            rows = rows[1:]
        if not rows or any(len(row) < 2 for row in rows):
            raise DataError(f"{source}: expected CSV rows of `file,label` (file relative to the CSV's folder)")
        return [(source.parent / row[0], row[1].strip()) for row in rows]
    raise DataError(f"--images {source}: neither a folder of class subfolders nor a .csv file of file,label rows")


def label_indices(names: list[str], labels: list[str], source: str) -> np.ndarray:
    index = {label: position for position, label in enumerate(labels)}
    unknown = sorted({name for name in names if name not in index})
    if unknown:
        raise DataError(
            f"{source}: label(s) {', '.join(unknown[:5])} are not among the model's labels ({', '.join(labels[:10])})"
        )
    return np.asarray([index[name] for name in names], dtype=np.int32)


def decode_labelled(source: Path, labels: list[str], size: tuple[int, int], resize: str) -> tuple[np.ndarray, ...]:
    pairs = labelled_images(source)
    indices = label_indices([name for _, name in pairs], labels, str(source))
    with step(f"decoding {len(pairs)} images"):
        pixels, kept, errors = load_images([file for file, _ in pairs], size, resize)
    for error in errors:
        log.warning("skipped: %s", error)
    if not kept:
        raise DataError(f"{source}: none of the {len(pairs)} images could be decoded")
    return pixels, indices[kept]
