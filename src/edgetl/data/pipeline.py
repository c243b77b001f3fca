"""Decoded examples to tf.data pipelines."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edgetl.data.folder import Example
from edgetl.errors import DataError
from edgetl.progress import step
from edgetl.runtime.image import load_images

log = logging.getLogger(__name__)


@dataclass
class DecodedSubset:
    pixels: np.ndarray  # (n, height, width, 3) uint8
    labels: np.ndarray  # (n,) int32
    examples: list[Example]  # the examples that decoded, in the order of `pixels`
    skipped: list[DataError]


# Images decoded between two reports of progress: enough to keep the decoding threads busy.
DECODE_CHUNK = 256


def decode_subset(
    examples: list[Example], image_size: int, resize: str = "bilinear", what: str = "images"
) -> DecodedSubset:
    """Decode a subset, skipping (and logging) files that cannot be read; `what` names them in the progress."""
    # Filled chunk by chunk, so the decoded pixels are held once, not once per chunk and again stacked.
    pixels = np.empty((len(examples), image_size, image_size, 3), np.uint8)
    kept: list[int] = []
    errors: list[DataError] = []
    with step(f"decoding {what}", total=len(examples)) as decoding:
        for start in range(0, len(examples), DECODE_CHUNK):
            paths = [example.path for example in examples[start : start + DECODE_CHUNK]]
            chunk, chunk_kept, chunk_errors = load_images(paths, (image_size, image_size), resize)
            pixels[len(kept) : len(kept) + len(chunk_kept)] = chunk
            kept += [start + index for index in chunk_kept]
            errors += chunk_errors
            decoding.advance(len(paths))
    pixels = pixels[: len(kept)]
    for error in errors:
        log.warning("skipped: %s", error)
    kept_examples = [examples[i] for i in kept]
    labels = np.asarray([e.label for e in kept_examples], dtype=np.int32)
    return DecodedSubset(pixels, labels, kept_examples, errors)


def to_dataset(subset: DecodedSubset, batch_size: int, shuffle_seed: int | None = None, augmenter=None):
    """A batched tf.data pipeline of float32 pixels (0-255) and integer labels.

    The pixels were decoded once, in parallel, and stay in memory (the cache); `augmenter`, a Keras model of
    random preprocessing layers, runs on each training batch inside tf.data, so it never becomes part of the
    saved model.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((subset.pixels, subset.labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(subset.labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if augmenter is not None:
        dataset = dataset.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
