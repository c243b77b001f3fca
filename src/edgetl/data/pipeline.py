"""Decoded examples to tf.data pipelines.

Training streams: a subset is checked once (every file decoded, the bad ones skipped with a warning) and its
pixels then come from wherever the cache chose to keep them: memory (`DecodedSubset`), a file of decoded pixels
on disk, the image files themselves (decoded again each epoch), or the arrays of an array layout. Each is a
`read(indices)` that returns model-sized uint8 pixels; `to_dataset` turns any of them into batches drawn in a
freshly shuffled order each epoch, so the process holds a few batches, not the dataset.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.data.folder import Example
from edgetl.errors import DataError
from edgetl.progress import step
from edgetl.runtime.image import load_images

log = logging.getLogger(__name__)

# --cache auto keeps decoded pixels in memory up to this many bytes (all subsets together), and on disk above it.
# Memory saves only the reading back of a file the page cache mostly holds anyway, so the budget is small: it
# keeps sets of a few thousand images at 224 px off the disk, and it leaves a machine of 8 GB room for
# TensorFlow, the model and the batches in flight, whatever the dataset's size.
MEMORY_CACHE_BYTES = 2**30


class SpilledPixels:
    """Images of one shape kept in an unnamed temporary file instead of memory, written and read by positioned
    reads as an array is sliced: `pixels[start:stop]` (or an array of indices) gives an array, `pixels[start:stop]
    = images` writes. What reads a batch at a time (an export's verification and calibration passes) holds a
    batch, not every image: an Xception export's 600 verification images at 299 px are 160 MB it no longer
    holds from start to end. Never a memory map, for the reason RecordFile gives."""

    def __init__(self, image_shape: tuple[int, ...], dtype=np.uint8) -> None:
        self.image_shape, self.dtype = tuple(image_shape), np.dtype(dtype)
        self.image_bytes = int(np.prod(self.image_shape)) * self.dtype.itemsize
        # Removed when closed or collected, with the object that holds it: no `with`.
        self._file = tempfile.TemporaryFile(prefix="edgetl-pixels-")  # noqa: SIM115
        self.count = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.count, *self.image_shape)

    def __len__(self) -> int:
        return self.count

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every image, read into memory (for what needs them all at once)."""
        return self[:] if dtype is None else self[:].astype(dtype)

    def __setitem__(self, index: slice, images: np.ndarray) -> None:
        start, stop = self._range(index, len(images))
        if stop - start != len(images):
            raise ValueError(f"{len(images)} images written to {stop - start} places")
        os.pwrite(self._file.fileno(), np.ascontiguousarray(images, self.dtype).tobytes(), start * self.image_bytes)
        self.count = max(self.count, stop)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            start, stop = self._range(index, self.count)
            return self._read(start, max(start, min(stop, self.count)))
        indices = np.asarray(index, np.int64)
        out = np.empty((len(indices), *self.image_shape), self.dtype)
        for row, position in enumerate(indices):
            out[row] = self._read(int(position), int(position) + 1)[0]
        return out

    def _range(self, index: slice, length: int) -> tuple[int, int]:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("spilled pixels are read and written by contiguous slices")
        start = index.start or 0
        return start, start + length if index.stop is None else index.stop

    def _read(self, start: int, stop: int) -> np.ndarray:
        if start < 0 or stop > self.count:
            raise IndexError(f"images {start}..{stop} of {self.count}")
        out = np.empty((stop - start, *self.image_shape), self.dtype)
        if os.preadv(self._file.fileno(), [out.reshape(-1).view(np.uint8)], start * self.image_bytes) != out.nbytes:
            raise OSError(f"images {start}..{stop}: the temporary file holding them is short")
        return out


@dataclass
class DecodedSubset:
    pixels: np.ndarray | SpilledPixels  # (n, height, width, 3) uint8
    labels: np.ndarray  # (n,) int32
    examples: list[Example]  # the examples that decoded, in the order of `pixels`
    skipped: list[DataError]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pixels.shape[1:])

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.pixels[indices]


@dataclass
class StreamedSubset:
    """A checked subset whose pixels are read when needed, a batch at a time."""

    labels: np.ndarray  # (n,) int32
    examples: list[Example]  # the examples that decoded (empty for an array layout)
    skipped: list[DataError]
    shape: tuple[int, ...]  # (height, width, 3)
    read: Callable[[np.ndarray], np.ndarray]  # indices -> (len(indices), *shape) uint8


class RecordFile:
    """Equal-sized arrays written once, in order, to a file, and read back by index.

    Reads are positioned reads, never a memory map: mapped pages count in the process's resident memory as they
    are touched, while read() leaves them to the page cache, which the kernel shrinks as it needs.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype) -> None:
        self.path = Path(path)
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.record_bytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self.path.open("wb")
        self._reader: int | None = None
        self.count = 0

    def append(self, arrays: np.ndarray) -> None:
        self._writer.write(np.ascontiguousarray(arrays, self.dtype).tobytes())
        self.count += len(arrays)

    def finish(self) -> RecordFile:
        self._writer.close()
        self._reader = os.open(self.path, os.O_RDONLY)
        return self

    def read(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), self.dtype)
        buffer = out.reshape(len(indices), -1).view(np.uint8)
        size = self.record_bytes
        for row, index in enumerate(np.asarray(indices, np.int64)):
            buffer[row] = np.frombuffer(os.pread(self._reader, size, int(index) * size), np.uint8)
        return out

    def __len__(self) -> int:
        return self.count


# Images decoded between two reports of progress: enough to keep the decoding threads busy.
DECODE_CHUNK = 256


def decode_subset(
    examples: list[Example], image_size: int, resize: str = "bilinear", what: str = "images", spill: bool = False
) -> DecodedSubset:
    """Decode a subset, skipping (and logging) files that cannot be read; `what` names them in the progress.
    With `spill`, the pixels are kept in a temporary file (SpilledPixels), not in memory."""
    # Filled chunk by chunk, so the decoded pixels are held once, not once per chunk and again stacked.
    shape = (image_size, image_size, 3)
    pixels = SpilledPixels(shape) if spill else np.empty((len(examples), *shape), np.uint8)
    kept: list[int] = []

    def keep(chunk: np.ndarray, chunk_kept: list[int], start: int) -> None:
        pixels[len(kept) : len(kept) + len(chunk_kept)] = chunk
        kept.extend(start + index for index in chunk_kept)

    errors = _decode_in_chunks(examples, image_size, resize, f"decoding {what}", keep)
    kept_examples = [examples[i] for i in kept]
    labels = np.asarray([e.label for e in kept_examples], dtype=np.int32)
    return DecodedSubset(pixels if spill else pixels[: len(kept)], labels, kept_examples, errors)


def _decode_in_chunks(examples: list[Example], image_size: int, resize: str, description: str, keep) -> list[DataError]:
    """Decode every example in parallel chunks, handing each chunk's pixels to `keep`; log and return the errors."""
    errors: list[DataError] = []
    with step(description, total=len(examples)) as decoding:
        for start in range(0, len(examples), DECODE_CHUNK):
            paths = [example.path for example in examples[start : start + DECODE_CHUNK]]
            chunk, chunk_kept, chunk_errors = load_images(paths, (image_size, image_size), resize)
            keep(chunk, chunk_kept, start)
            errors += chunk_errors
            decoding.advance(len(paths))
    for error in errors:
        log.warning("skipped: %s", error)
    return errors


def file_reader(paths: list[Path], image_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Pixels decoded from the files again on every read (--cache none)."""

    def read(indices: np.ndarray) -> np.ndarray:
        chosen = [paths[int(i)] for i in indices]
        pixels, _, errors = load_images(chosen, (image_size, image_size))
        if errors:  # it decoded when checked: the file changed during training
            raise errors[0]
        return pixels

    return read


def check_subset(
    examples: list[Example], image_size: int, cache: str, cache_file: Path | None = None, what: str = "images"
) -> DecodedSubset | StreamedSubset:
    """Decode every file of a subset once, skipping (and logging) the bad ones, and keep the pixels as `cache`
    says: "memory" (a DecodedSubset), "disk" (written to `cache_file` and read back) or "none" (decoded again
    when read)."""
    if cache == "memory":
        return decode_subset(examples, image_size, what=what)
    shape = (image_size, image_size, 3)
    records = RecordFile(cache_file, shape, np.uint8) if cache == "disk" else None
    kept: list[int] = []

    def keep(chunk: np.ndarray, chunk_kept: list[int], start: int) -> None:
        if records is not None:
            records.append(chunk)
        kept.extend(start + index for index in chunk_kept)

    errors = _decode_in_chunks(examples, image_size, "bilinear", f"checking {what}", keep)
    kept_examples = [examples[i] for i in kept]
    labels = np.asarray([e.label for e in kept_examples], dtype=np.int32)
    if records is not None:
        read = records.finish().read
    else:
        read = file_reader([example.path for example in kept_examples], image_size)
    return StreamedSubset(labels, kept_examples, errors, shape, read)


def indexed_batches(count: int, batch_size: int, shuffle_seed: int | None, load, specs):
    """Batches of `load(indices)`: the indices 0..count-1 shuffled afresh each epoch (when seeded), batched, and
    loaded by a Python function in parallel; `specs` are the tf.TensorSpec of its outputs, batch dimension open."""
    import tensorflow as tf

    indices = tf.data.Dataset.range(count)
    if shuffle_seed is not None:
        indices = indices.shuffle(count, seed=shuffle_seed, reshuffle_each_iteration=True)

    def loaded(batch):
        outputs = tf.numpy_function(load, [batch], [spec.dtype for spec in specs], stateful=False)
        return tuple(tf.ensure_shape(output, spec.shape) for output, spec in zip(outputs, specs, strict=True))

    dataset = indices.batch(batch_size).map(loaded, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.with_options(per_worker_options())


def per_worker_options():
    """Each worker's input is its own shard already (see `edgetl.training.strategy.WorkerRole`): no auto-sharding."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


def to_dataset(
    subset: DecodedSubset | StreamedSubset, batch_size: int, shuffle_seed: int | None = None, augmenter=None
):
    """A batched tf.data pipeline of float32 pixels (0-255) and integer labels, prefetched.

    `augmenter`, a Keras model of random preprocessing layers, runs on each training batch inside tf.data, so it
    never becomes part of the saved model.
    """
    import tensorflow as tf

    labels = np.asarray(subset.labels, np.int32)

    def load(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return subset.read(indices), labels[indices]

    specs = (tf.TensorSpec([None, *subset.shape], tf.uint8), tf.TensorSpec([None], tf.int32))
    dataset = indexed_batches(len(labels), batch_size, shuffle_seed, load, specs)
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if augmenter is not None:
        dataset = dataset.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
