"""Layouts whose images are arrays rather than files: an .npz of X/y arrays, and tensorflow-datasets."""

from __future__ import annotations

import importlib.util
import logging
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgetl.data.dataset import ArrayImages, Dataset, require_images, stratified_pick
from edgetl.data.options import LayoutOptions
from edgetl.data.split import VALIDATION_NAMES
from edgetl.errors import DataError

log = logging.getLogger(__name__)

NPZ_KEYS = ("X_train", "y_train", "X_test", "y_test")
MAX_CLASSES = 100_000


def to_rgb_uint8(images: np.ndarray, source: str, scale: float | None = None) -> np.ndarray:
    """(n, h, w), (n, h, w, 1|3|4) of uint8, uint16 or float (0-1 or 0-255) to (n, h, w, 3) uint8.

    Floats are multiplied by `scale`, or by 255 when it is None and every value is at most 1 (Keras-style 0-1
    floats); several arrays of one dataset must share one scale (see `float_scale`).
    """
    images = np.asarray(images)
    if images.dtype.kind not in "uif":
        raise DataError(f"{source}: images of type {images.dtype}; expected numbers (uint8, uint16 or float)")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise DataError(f"{source}: images of shape {images.shape}; expected (n, height, width[, 1|3|4 channels])")
    if len(images) == 0 or images.size == 0:
        raise DataError(f"{source}: holds no images (shape {images.shape})")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    images = images[..., :3]
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.uint16:
        return (images.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    values = images.astype(np.float32)
    check_finite(values, source)
    values = values * (float_scale([values]) if scale is None else scale)
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)


def check_finite(values: np.ndarray, source: str) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        bad_images = np.flatnonzero(~finite.reshape(len(values), -1).all(axis=1))
        raise DataError(
            f"{source}: {int((~finite).sum())} NaN or infinite values in {len(bad_images)} image(s) (the first is "
            f"image {int(bad_images[0])}); replace them or drop those images"
        )


def float_scale(arrays: list[np.ndarray]) -> float:
    """255 when every float array holds values of at most 1 (0-1 images), else 1: one answer for the dataset."""
    floats = [a for a in arrays if a.dtype.kind == "f" and a.size]
    return 255.0 if floats and all(float(np.max(a)) <= 1.0 for a in floats) else 1.0


def to_labels(labels: np.ndarray, source: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind in "USO":
        shown = ", ".join(repr(str(value)) for value in labels.reshape(-1)[:3])
        raise DataError(
            f"{source}: labels are text ({shown}, ...); expected whole numbers 0 .. classes - 1, "
            f"with the names in a class_names array"
        )
    if labels.dtype.kind not in "biuf":
        raise DataError(f"{source}: labels of type {labels.dtype}; expected whole numbers or one-hot rows")
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
    if not any(lab.size for lab in labels):
        raise DataError(f"{source}: holds no labels")
    count = max(int(lab.max()) + 1 for lab in labels if lab.size)
    if any(lab.size and lab.min() < 0 for lab in labels):
        raise DataError(f"{source}: negative labels; expected 0 .. number of classes - 1")
    if given is None and count > MAX_CLASSES:
        raise DataError(f"{source}: labels go up to {count - 1}; more than {MAX_CLASSES} classes is not a dataset")
    if given is None:
        return [str(label) for label in range(count)]
    if len(given) < count:
        raise DataError(f"{source}: {len(given)} class_names for labels up to {count - 1}")
    return list(given)


def npz_array(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as error:  # object arrays, which only pickle (running code) could load
        reason = str(error).splitlines()[0]
        raise DataError(f"{path}: {key} cannot be read ({reason}); save it as an array of numbers or strings") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: {key} is damaged ({error})") from None


def npz_class_names(names: np.ndarray, path: Path) -> list[str]:
    if names.ndim != 1 or names.dtype.kind not in "USiu":
        raise DataError(
            f"{path}: class_names is {'a single value' if names.ndim == 0 else f'of shape {names.shape}'} "
            f"of type {names.dtype}; expected a list of names, one per class"
        )
    return [name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name) for name in names.tolist()]


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
        raw = {key: npz_array(archive, key, path) for key in (*NPZ_KEYS, "class_names") if key in archive.files}
    # Train and test images are scaled alike: a 0-1 test set beside a 0-255 training set would otherwise be read
    # on two different scales.
    for key in ("X_train", "X_test"):
        if raw[key].dtype.kind == "f" and raw[key].ndim:
            check_finite(raw[key], f"{path}:{key}")
    scale = float_scale([raw["X_train"], raw["X_test"]])
    x_train = to_rgb_uint8(raw["X_train"], f"{path}:X_train", scale)
    x_test = to_rgb_uint8(raw["X_test"], f"{path}:X_test", scale)
    y_train = to_labels(raw["y_train"], f"{path}:y_train")
    y_test = to_labels(raw["y_test"], f"{path}:y_test")
    given = npz_class_names(raw["class_names"], path) if "class_names" in raw else None
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
    validation_split = next((splits[key] for key in VALIDATION_NAMES if key in splits), None)
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
