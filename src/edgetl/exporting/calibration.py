"""The calibration set for int8: a stratified sample of real training images, checked against the model first."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from edgetl.data.folder import Example
from edgetl.data.pipeline import DecodedSubset, RecordFile, decode_subset
from edgetl.data.split import stratified_order
from edgetl.errors import DataError, EdgetlError
from edgetl.exporting.verify import UNLABELLED

if TYPE_CHECKING:
    from edgetl.exporting.source import ExportSource

log = logging.getLogger(__name__)

MIN_CALIBRATION_IMAGES = 10
# Images handed out at a time when a consumer iterates a sample image by image (the converters' calibration).
ITERATION_BATCH = 16


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


class ImageSample:
    """The first `count` calibration images as raw float32 pixels, read where they are kept only when asked: a
    slice gives an array, iterating gives one image at a time, `batches` a batch at a time. Whatever calibrates
    from a sample holds a batch, never the whole sample, so any number of images calibrates in bounded memory."""

    def __init__(self, read: Callable[[int, int], np.ndarray], count: int) -> None:
        self._read = read  # (start, stop) -> float32 pixels of those images
        self.count = count

    @classmethod
    def of(cls, pixels: np.ndarray) -> ImageSample:
        """A sample of images already in memory."""
        return cls(lambda start, stop: np.asarray(pixels[start:stop], np.float32), len(pixels))

    def __len__(self) -> int:
        return self.count

    def first(self, count: int) -> ImageSample:
        """The first `count` of these images, still read only when asked."""
        return ImageSample(self._read, min(count, self.count))

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("an image sample is read by contiguous slices")
        start, stop, _ = index.indices(self.count)
        return self._read(start, max(start, stop))

    def batches(self, size: int, start: int = 0) -> Iterator[np.ndarray]:
        """The images from `start` on, `size` at a time."""
        for first in range(start, self.count, max(1, size)):
            yield self._read(first, min(self.count, first + max(1, size)))

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches(ITERATION_BATCH):
            yield from batch


class CalibrationImages:
    """The source's calibration pool in a seeded, stratified order, decoded as in training only as far as a
    recipe asks (a later rung may want more images than the first); the first sample is checked. The decoded
    pixels are kept as uint8 in an unnamed temporary file, not in memory: a sample reads them back in batches."""

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
        self.spilled = RecordFile(None, (*source.metadata.input_size, 3), np.uint8)
        self.examples: list[Example] = []  # those kept, in the order of `spilled`
        self.decoded = 0  # how many of `order` were tried (some may not decode)
        first = self._decode(samples)
        check_calibration(
            first,
            source.class_names,
            tuple(source.model.input_shape),
            source.metadata.pixel_range,
            f"calibration sample ({samples} requested, of {len(pool)} images)",
        )
        log.info("calibrating on %d images", self.kept)

    @property
    def kept(self) -> int:
        """Images decoded and kept so far."""
        return len(self.spilled)

    @property
    def available(self) -> int:
        return len(self.source.calibration_pool)

    def _decode(self, count: int):
        chosen = self.order[self.decoded : self.decoded + count]
        metadata = self.source.metadata
        subset = decode_subset(chosen, metadata.input_size[0], metadata.resize, "calibration images")
        self.decoded += len(chosen)
        self.spilled.append(subset.pixels)
        self.examples += subset.examples
        return subset

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self.spilled[start:stop].astype(np.float32)

    def positions_in(self, subset: DecodedSubset, count: int) -> np.ndarray | None:
        """Where each of the first `count` images kept is in `subset` (the export's verification images), if each
        is there with the same pixels (decoded alike); else None."""
        index = {example.path: position for position, example in enumerate(subset.examples)}
        found = [index.get(example.path) for example in self.examples[:count]]
        if None in found or len(set(found)) != len(found):
            return None
        positions = np.asarray(found, np.int64)
        for start in range(0, len(positions), ITERATION_BATCH):
            stop = start + ITERATION_BATCH
            if not np.array_equal(self.spilled[start:stop], subset.read(positions[start:stop])):
                return None
        return positions

    def take(self, count: int) -> ImageSample:
        """The first `count` images (fewer where the pool has no more that decode), decoding more if needed."""
        if self.kept < count and self.decoded < len(self.order):
            self._decode(count - self.kept)
        return ImageSample(self._read, min(count, self.kept))


def as_sample(images) -> ImageSample:
    """`images` as an ImageSample: itself, or an array of raw pixels wrapped."""
    return images if isinstance(images, ImageSample) else ImageSample.of(np.asarray(images))
