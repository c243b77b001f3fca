"""Decoded examples to tf.data pipelines."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edgetl.data.folder import Example
from edgetl.errors import DataError
from edgetl.runtime.image import load_images

log = logging.getLogger(__name__)


@dataclass
class DecodedSubset:
    pixels: np.ndarray  # (n, height, width, 3) uint8
    labels: np.ndarray  # (n,) int32
    examples: list[Example]  # the examples that decoded, in the order of `pixels`
    skipped: list[DataError]


def decode_subset(examples: list[Example], image_size: int, resize: str = "bilinear") -> DecodedSubset:
    """Decode a subset, skipping (and logging) files that cannot be read."""
    pixels, kept, errors = load_images([e.path for e in examples], (image_size, image_size), resize)
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
