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


@dataclass
class DecodedSubset:
    pixels: np.ndarray | RecordFile  # (n, height, width, 3) uint8
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
    """Equal-sized arrays written once, in order, to a file (`path`, or an unnamed temporary file removed with this
    object), and read back as an array is: by an array of indices (`read`, or indexing), or by a contiguous slice
    in one read. What reads a batch at a time (training's spilled features, an export's verification and
    calibration images) holds a batch, not every record: an Xception export's 600 verification images at 299 px
    are 160 MB it no longer holds from start to end.

    Reads are positioned reads, never a memory map: mapped pages count in the process's resident memory as they
    are touched, while read() leaves them to the page cache, which the kernel shrinks as it needs. Writes are
    positioned too, so what is written can be read at once.
    """

    def __init__(self, path: Path | None, record_shape: tuple[int, ...], dtype) -> None:
        self.path = None if path is None else Path(path)
        self.record_shape, self.dtype = tuple(record_shape), np.dtype(dtype)
        self.record_bytes = int(np.prod(self.record_shape)) * self.dtype.itemsize
        if self.path is None:
            # Removed when closed or collected, with this object: no `with`.
            self._file = tempfile.TemporaryFile(prefix="edgetl-records-")  # noqa: SIM115
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w+b")  # noqa: SIM115
        self.count = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.count, *self.record_shape)

    def __len__(self) -> int:
        return self.count

    def append(self, arrays: np.ndarray) -> None:
        data = np.ascontiguousarray(arrays, self.dtype).tobytes()
        os.pwrite(self._file.fileno(), data, self.count * self.record_bytes)
        self.count += len(arrays)

    def read(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, np.int64)
        out = np.empty((len(indices), *self.record_shape), self.dtype)
        for row, index in enumerate(indices):
            self._read_into(out[row : row + 1], int(index))
        return out

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, slice):
            return self.read(index)
        if index.step not in (None, 1):
            raise TypeError("records are read by contiguous slices or by indices")
        start, stop, _ = index.indices(self.count)
        out = np.empty((max(0, stop - start), *self.record_shape), self.dtype)
        if len(out):
            self._read_into(out, start)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every record, read into memory (for what needs them all at once)."""
        return self[:] if dtype is None else self[:].astype(dtype)

    def _read_into(self, out: np.ndarray, first: int) -> None:
        if first < 0 or first + len(out) > self.count:
            raise IndexError(f"records {first}..{first + len(out)} of {self.count}")
        offset = first * self.record_bytes
        if os.preadv(self._file.fileno(), [out.reshape(-1).view(np.uint8)], offset) != out.nbytes:
            raise OSError(f"records {first}..{first + len(out)}: the file holding them is short")


# Images decoded between two reports of progress: enough to keep the decoding threads busy.
DECODE_CHUNK = 256


def decode_subset(
    examples: list[Example], image_size: int, resize: str = "bilinear", what: str = "images", spill: bool = False
) -> DecodedSubset:
    """Decode a subset, skipping (and logging) files that cannot be read; `what` names them in the progress.
    With `spill`, the pixels are kept in a temporary file (RecordFile), not in memory."""
    # Filled chunk by chunk, so the decoded pixels are held once, not once per chunk and again stacked.
    shape = (image_size, image_size, 3)
    pixels = RecordFile(None, shape, np.uint8) if spill else np.empty((len(examples), *shape), np.uint8)
    kept: list[int] = []

    def keep(chunk: np.ndarray, chunk_kept: list[int], start: int) -> None:
        if spill:
            pixels.append(chunk)
        else:
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
    read = records.read if records is not None else file_reader([e.path for e in kept_examples], image_size)
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
