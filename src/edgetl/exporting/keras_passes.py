"""Running the Keras model over many images in bounded memory: a few images at a time, as a compiled graph.

TensorFlow keeps in its memory pool what the largest call needed until the process ends, so how many images one
call takes decides what an export holds long after the call. Keras' `predict` on large batches, or an eager call,
leaves hundreds of megabytes behind at 224 px; `predict_on_batch` on a few images leaves little, as fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edgetl.exporting.activation_ranges import images_per_batch

# The summed layer outputs of one batch run through the Keras model as a graph (keras_batch_size). A graph frees each
# activation once it is used, so what it holds at once is a fraction of this; TensorFlow's memory pool keeps what
# the largest batch needed until the process ends, so the batch is kept small. A few images a call cost no speed.
KERAS_BATCH_BYTES = 512 * 2**20


def walk_layers(model) -> Iterator:
    """The model's layers, and those of the models nested in it."""
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)


def activation_bytes(model) -> int:
    """The bytes of every layer's output for one image."""
    total = 0
    for layer in walk_layers(model):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # a layer called more than once, or never
            continue
        if len(shape) > 1 and all(dim is not None for dim in shape[1:]):
            total += int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(np.float32).itemsize
    return max(total, 1)


def keras_batch_size(model) -> int:
    """How many images one graph call of the Keras model takes (KERAS_BATCH_BYTES of layer outputs)."""
    return images_per_batch(activation_bytes(model), KERAS_BATCH_BYTES)


def keras_probabilities(model, pixels: np.ndarray) -> np.ndarray:
    """The model's outputs for `pixels` (any dtype; each batch is made float32 on its own, so no float copy of
    every image is made), keras_batch_size images a call."""
    batch_size = keras_batch_size(model)
    outputs = [
        np.asarray(model.predict_on_batch(np.asarray(pixels[start : start + batch_size], np.float32)))
        for start in range(0, len(pixels), batch_size)
    ]
    return np.concatenate(outputs, axis=0)
