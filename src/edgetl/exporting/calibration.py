"""The calibration set for int8: a stratified sample of real training images, checked against the model first."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from edgetl.data.folder import Example
from edgetl.data.pipeline import DecodedSubset, decode_subset
from edgetl.data.split import stratified_order
from edgetl.errors import DataError, EdgetlError
from edgetl.exporting.verify import UNLABELLED

if TYPE_CHECKING:
    from edgetl.exporting.source import ExportSource

log = logging.getLogger(__name__)

MIN_CALIBRATION_IMAGES = 10


def stratified_sample(examples: list[Example], samples: int, seed: int = 0) -> list[Example]:
    """Up to `samples` examples, taken round-robin from each class's own seeded shuffle, so every class gets
    its share (classes with few images give all they have)."""
    return [examples[index] for index in stratified_order([e.label for e in examples], samples, seed)]


def check_calibration(
    calibration: DecodedSubset,
    class_names: list[str],
    input_shape: tuple,
    pixel_range: tuple[float, float],
    source: str,
) -> None:
    """Refuse a calibration set that would give a quietly broken int8 file."""
    count = len(calibration.labels)
    if count < MIN_CALIBRATION_IMAGES:
        raise DataError(
            f"{source}: only {count} calibration image(s) could be decoded; int8 needs at least "
            f"{MIN_CALIBRATION_IMAGES} real images (raise --calibration-samples or add images)"
        )
    _check_class_coverage(calibration, class_names, source)
    pixels = calibration.pixels
    expected = tuple(int(d) for d in input_shape[1:] if d is not None)
    if pixels.shape[1:] != expected:
        raise DataError(f"{source}: calibration images are {pixels.shape[1:]}, the model takes {expected}")
    if not np.issubdtype(pixels.dtype, np.number):
        raise DataError(f"{source}: calibration pixels are {pixels.dtype}, the model takes numbers")
    low, high = float(pixels.min()), float(pixels.max())
    if low < pixel_range[0] or high > pixel_range[1]:
        raise DataError(
            f"{source}: calibration pixels span {low:g}..{high:g}, outside the model's input range "
            f"{pixel_range[0]:g}..{pixel_range[1]:g}"
        )
    if high - low < 0.05 * (pixel_range[1] - pixel_range[0]):
        raise DataError(
            f"{source}: calibration pixels span only {low:g}..{high:g} of the model's {pixel_range[0]:g}.."
            f"{pixel_range[1]:g}: blank or already-normalised images would calibrate the wrong range"
        )


def _check_class_coverage(calibration: DecodedSubset, class_names: list[str], source: str) -> None:
    """Every class must be seen when the images have labels; a plain folder of images has none to check."""
    labels = calibration.labels[calibration.labels != UNLABELLED]
    if labels.size == 0:
        return
    missing = sorted(set(range(len(class_names))) - {int(label) for label in labels})
    if not missing:
        return
    names = ", ".join(class_names[i] for i in missing[:8])
    names += f" and {len(missing) - 8} more" if len(missing) > 8 else ""
    counts = f"{len(labels)} image(s) of {len(class_names) - len(missing)} of the {len(class_names)} classes"
    raise DataError(
        f"{source}: {counts}, none of {names}; add images of those classes, or calibrate on a plain folder of "
        f"images (no class subfolders), which needs no labels"
    )


class CalibrationImages:
    """The source's calibration pool in a seeded, stratified order, decoded as in training only as far as a
    recipe asks (a later rung may want more images than the first); the first sample is checked."""

    def __init__(self, source: ExportSource, samples: int) -> None:
        self.source = source
        pool = source.calibration_pool
        classes = {example.label for example in pool if example.label != UNLABELLED}
        if 0 < samples < len(classes):
            raise EdgetlError(
                f"--calibration-samples {samples}: fewer than the {len(classes)} classes of the calibration images; "
                f"use {len(classes)} or more, so every class is seen"
            )
        self.order = stratified_sample(pool, len(pool), seed=source.seed)
        self.pixels = np.zeros((0, *source.metadata.input_size, 3), np.float32)
        self.decoded = 0  # how many of `order` were tried (some may not decode)
        first = self._decode(samples)
        check_calibration(
            first,
            source.class_names,
            tuple(source.model.input_shape),
            source.metadata.pixel_range,
            f"calibration sample ({samples} requested, of {len(pool)} images)",
        )
        log.info("calibrating on %d images", len(self.pixels))

    @property
    def available(self) -> int:
        return len(self.source.calibration_pool)

    def _decode(self, count: int):
        chosen = self.order[self.decoded : self.decoded + count]
        metadata = self.source.metadata
        subset = decode_subset(chosen, metadata.input_size[0], metadata.resize, "calibration images")
        self.decoded += len(chosen)
        self.pixels = np.concatenate([self.pixels, subset.pixels.astype(np.float32)])
        return subset

    def take(self, count: int) -> np.ndarray:
        if len(self.pixels) < count and self.decoded < len(self.order):
            self._decode(count - len(self.pixels))
        return self.pixels[:count]
