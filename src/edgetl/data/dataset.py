"""The one Dataset description every layout produces, and what training and the run make of it.

Layouts with image files (class folders, presplit folders, CSV) describe a `Split` of files. Layouts whose images
are arrays (npz, tfds) hold them in memory; for those the run gets the test images and a calibration sample of
training images written as PNG files, so that export and bench, which read files, see the same pictures.
"""

from __future__ import annotations

import io
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetl.data.folder import Example
from edgetl.data.pipeline import MEMORY_CACHE_BYTES, DecodedSubset, StreamedSubset, check_subset
from edgetl.data.split import SUBSETS, Split, stratified_order
from edgetl.errors import DataError
from edgetl.files import staged_folder
from edgetl.progress import step

CALIBRATION_IMAGES = 300  # training images written for an array layout: enough for int8 calibration


@dataclass
class ArrayImages:
    """Images held in memory: uint8 RGB arrays (height, width, 3) at their own size, and integer labels."""

    images: list[np.ndarray] | np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """A labelled dataset split into train/validation/test, whatever layout it came in."""

    layout: str
    source: str
    class_names: list[str]
    split: Split | None = None  # layouts made of image files
    arrays: dict[str, ArrayImages] = field(default_factory=dict)  # layouts made of arrays, keyed by subset

    def counts(self) -> dict[str, int]:
        if self.split is not None:
            return {name: len(self.split.subset(name)) for name in SUBSETS}
        return {name: len(self.arrays[name]) for name in SUBSETS}


def stratified_pick(labels: list[int] | np.ndarray, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (kept, picked): about `fraction` of each class picked, at least one of every class with two or more."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    kept: list[int] = []
    picked: list[int] = []
    for indices in by_class.values():
        shuffled = indices[:]
        rng.shuffle(shuffled)
        count = min(max(1, round(len(shuffled) * fraction)), len(shuffled) - 1) if len(shuffled) > 1 else 0
        picked.extend(shuffled[:count])
        kept.extend(shuffled[count:])
    rng.shuffle(kept)
    rng.shuffle(picked)
    return kept, picked


def resize_array(image: np.ndarray, image_size: int) -> np.ndarray:
    """Exactly what decoding the PNG of this array gives (same Pillow bilinear resize as `load_image`)."""
    from PIL import Image

    from edgetl.runtime.image import RESAMPLING

    if image.shape[:2] == (image_size, image_size):
        return np.asarray(image, dtype=np.uint8)
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8), mode="RGB")
    return np.asarray(picture.resize((image_size, image_size), RESAMPLING["bilinear"]), dtype=np.uint8)


def decode_dataset_subset(dataset: Dataset, name: str, image_size: int) -> DecodedSubset:
    """Model-sized pixels of one subset, all in memory; bad files are skipped (and logged) by `decode_subset`."""
    return stream_dataset_subset(dataset, name, image_size, "memory")


def choose_cache(cache: str, dataset: Dataset, image_size: int) -> str:
    """--cache as it will be done: "auto" is memory while all decoded pixels fit MEMORY_CACHE_BYTES, else disk.
    An array layout's images are in memory already: resizing a batch when it is read costs little, and a resized
    copy would be a second full copy, so there "auto" reads the arrays ("none"); so does "disk", since the arrays
    are read in place rather than copied to a file, and the run records what was done."""
    if dataset.split is None and cache != "memory":
        return "none"
    if cache != "auto":
        return cache
    decoded_bytes = sum(dataset.counts().values()) * image_size * image_size * 3
    return "memory" if decoded_bytes <= MEMORY_CACHE_BYTES else "disk"


def stream_dataset_subset(
    dataset: Dataset,
    name: str,
    image_size: int,
    cache: str,
    cache_folder: Path | None = None,
    shard: tuple[int, int] = (0, 1),
) -> DecodedSubset | StreamedSubset:
    """One subset checked and cached as `cache` (not "auto": see `choose_cache`) for training; `shard` = (index,
    count) keeps every count-th image from the index-th, so that each of several workers reads only its own."""
    index, count = shard
    if dataset.split is not None:
        examples = dataset.split.subset(name)[index::count]
        cache_file = None if cache_folder is None else Path(cache_folder) / f"{name}-{index}.pixels"
        return check_subset(examples, image_size, cache, cache_file, what=f"{name} images")
    arrays = dataset.arrays[name]
    chosen = np.arange(len(arrays))[index::count]
    labels = np.asarray(arrays.labels, dtype=np.int32)[chosen]
    if cache == "memory":
        pixels = np.zeros((len(chosen), image_size, image_size, 3), dtype=np.uint8)
        with step(f"resizing {name} images", total=len(chosen)) as resizing:
            for row, position in enumerate(chosen):
                pixels[row] = resize_array(arrays.images[position], image_size)
                resizing.advance()
        return DecodedSubset(pixels, labels, [], [])

    def read(indices: np.ndarray) -> np.ndarray:
        return np.stack([resize_array(arrays.images[chosen[int(i)]], image_size) for i in indices])

    return StreamedSubset(labels, [], [], (image_size, image_size, 3), read)


def safe_folder_name(name: str) -> str:
    """A class name as a folder name: no separators, no leading dot."""
    cleaned = re.sub(r"[^\w.\- ]+", "_", name).strip().lstrip(".")
    return cleaned or "class"


def write_array_files(dataset: Dataset, data_dir: Path, seed: int, calibration: int = CALIBRATION_IMAGES) -> Split:
    """Write the test images and a stratified sample of training images as PNG files under `data_dir`.

    The folder is built beside its final place and renamed, so an interrupted run never leaves half of it.
    """
    from PIL import Image

    data_dir = Path(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    folders = [safe_folder_name(name) for name in dataset.class_names]
    duplicates = [name for name, count in Counter(folders).items() if count > 1]
    if duplicates:
        folders = [f"{index:03d}_{name}" for index, name in enumerate(folders)]
    chosen = {
        "train": stratified_order(dataset.arrays["train"].labels, calibration, seed),
        "validation": [],
        "test": list(range(len(dataset.arrays["test"]))),
    }
    rows: dict[str, list[Example]] = {}
    with staged_folder(data_dir) as staging:
        for subset, indices in chosen.items():
            rows[subset] = []
            images = dataset.arrays[subset]
            for index in indices:
                label = int(images.labels[index])
                relative = Path(subset) / folders[label] / f"{index:06d}.png"
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                buffer = io.BytesIO()
                Image.fromarray(np.asarray(images.images[index], dtype=np.uint8), mode="RGB").save(buffer, "PNG")
                (staging / relative).write_bytes(buffer.getvalue())
                rows[subset].append(Example(data_dir / relative, label))
    return Split(data_dir, list(dataset.class_names), rows["train"], rows["validation"], rows["test"])


def check_class_names(class_names: list[str], source: str) -> None:
    """Every class name must survive being a line of labels.txt (read back stripped, one per line), so the labels
    a model carries are its classes, one for one; a name that cannot is refused, never dropped or split."""
    for name in class_names:
        if not name.strip() or name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise DataError(
                f"{source}: class name {name!r} cannot be a line of labels.txt (empty, spaces at an end, or a "
                f"line break or other control character); rename that class"
            )
    repeated = sorted(name for name, count in Counter(class_names).items() if count > 1)
    if repeated:
        raise DataError(f"{source}: class name(s) {', '.join(map(repr, repeated))} given more than once")


def require_images(dataset: Dataset) -> None:
    for name, count in dataset.counts().items():
        if count == 0:
            raise DataError(f"{dataset.source}: the {name} subset is empty; every class needs more images")
