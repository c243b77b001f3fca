"""Layouts whose images are arrays rather than files: an .npz of X/y arrays, and tensorflow-datasets."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgetl.data.dataset import ArrayImages, Dataset, require_images, stratified_pick
from edgetl.data.layouts import LayoutOptions
from edgetl.errors import DataError

log = logging.getLogger(__name__)

NPZ_KEYS = ("X_train", "y_train", "X_test", "y_test")


def to_rgb_uint8(images: np.ndarray, source: str) -> np.ndarray:
    """(n, h, w), (n, h, w, 1|3|4) of uint8, uint16 or float (0-1 or 0-255) to (n, h, w, 3) uint8."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise DataError(f"{source}: images of shape {images.shape}; expected (n, height, width[, 1|3|4 channels])")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    images = images[..., :3]
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.uint16:
        return (images.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    values = images.astype(np.float32)
    if values.size and values.max() <= 1.0:
        values = values * 255.0  # Keras-style 0-1 floats
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)


def to_labels(labels: np.ndarray, source: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        return labels.argmax(axis=1).astype(np.int32)  # one-hot
    labels = labels.reshape(-1)
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise DataError(f"{source}: labels must be integers or one-hot rows")
    return labels.astype(np.int32)


def carve_validation(train: ArrayImages, options: LayoutOptions) -> tuple[ArrayImages, ArrayImages]:
    kept, picked = stratified_pick(train.labels, options.validation_fraction, options.seed)

    def take(indices: list[int]) -> ArrayImages:
        return ArrayImages([train.images[i] for i in indices], train.labels[indices])

    return take(kept), take(picked)


def class_names_for(labels: list[np.ndarray], given: list[str] | None, source: str) -> list[str]:
    count = max(int(lab.max()) + 1 for lab in labels if lab.size)
    if any(lab.size and lab.min() < 0 for lab in labels):
        raise DataError(f"{source}: negative labels; expected 0 .. number of classes - 1")
    if given is None:
        return [str(label) for label in range(count)]
    if len(given) < count:
        raise DataError(f"{source}: {len(given)} class_names for labels up to {count - 1}")
    return list(given)


def read_npz(path: Path, options: LayoutOptions) -> Dataset:
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise DataError(
                f"{path}: lacks {', '.join(missing)} (has {', '.join(archive.files)}); "
                f"expected X_train, y_train, X_test, y_test and optionally class_names"
            )
        x_train = to_rgb_uint8(archive["X_train"], f"{path}:X_train")
        x_test = to_rgb_uint8(archive["X_test"], f"{path}:X_test")
        y_train = to_labels(archive["y_train"], f"{path}:y_train")
        y_test = to_labels(archive["y_test"], f"{path}:y_test")
        given = [str(name) for name in archive["class_names"]] if "class_names" in archive.files else None
    for images, labels, name in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(images) != len(labels):
            raise DataError(f"{path}: X_{name} has {len(images)} images but y_{name} {len(labels)} labels")
    class_names = class_names_for([y_train, y_test], given, str(path))
    train, validation = carve_validation(ArrayImages(x_train, y_train), options)
    arrays = {"train": train, "validation": validation, "test": ArrayImages(x_test, y_test)}
    dataset = Dataset("npz", str(path), class_names, arrays=arrays)
    require_images(dataset)
    return dataset


def read_tfds(name: str, options: LayoutOptions) -> Dataset:
    """tfds:NAME, through the optional tensorflow-datasets package (never a required dependency)."""
    source = f"tfds:{name}"
    if importlib.util.find_spec("tensorflow_datasets") is None:
        raise DataError(f"{source} needs the optional package tensorflow-datasets: pip install tensorflow-datasets")
    from edgetl.tfquiet import import_tensorflow_quietly

    import_tensorflow_quietly()  # tensorflow-datasets imports TensorFlow
    import tensorflow_datasets as tfds

    try:
        splits, info = tfds.load(name, as_supervised=True, with_info=True)
    except Exception as error:  # tfds raises plain Exception subclasses of its own for unknown names and downloads
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(
            f"{source}: cannot load ({reason}); tensorflow-datasets needs the network the first time, "
            f"or use a folder of images"
        ) from None
    label_feature = info.features.get("label", None)
    names = list(getattr(label_feature, "names", []) or []) or None

    def collect(split) -> ArrayImages:
        images, labels = [], []
        for image, label in tfds.as_numpy(split):
            images.append(to_rgb_uint8(np.asarray(image)[np.newaxis], source)[0])
            labels.append(int(label))
        return ArrayImages(images, np.asarray(labels, dtype=np.int32))

    if "train" not in splits:
        raise DataError(f"{source}: has no 'train' split (splits: {', '.join(splits)})")
    train = collect(splits["train"])
    validation_split = next((splits[key] for key in ("validation", "valid", "val") if key in splits), None)
    if "test" in splits:
        test = collect(splits["test"])
    else:
        kept, picked = stratified_pick(train.labels, options.test_fraction, options.seed + 1)
        test = ArrayImages([train.images[i] for i in picked], train.labels[picked])
        train = ArrayImages([train.images[i] for i in kept], train.labels[kept])
    if validation_split is not None:
        validation = collect(validation_split)
    else:
        # The same overall proportions as a class-folder split: validation is a fraction of the whole.
        share = options.validation_fraction / max(1e-9, 1.0 - options.test_fraction * ("test" not in splits))
        train, validation = carve_validation(train, replace(options, validation_fraction=share))
    class_names = class_names_for([train.labels, test.labels], names, source)
    dataset = Dataset("tfds", source, class_names, arrays={"train": train, "validation": validation, "test": test})
    require_images(dataset)
    log.info("%s: %s", source, dataset.counts())
    return dataset
