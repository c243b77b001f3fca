"""Random augmentation as Keras preprocessing layers, run inside tf.data on training batches only.

They are never part of the model that is saved or exported: a device must see the picture as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from edgetl.data.options import FLIP_MODES, AugmentConfig


def _flip(keras, config: AugmentConfig, seed: int):
    return None if config.flip == "none" else keras.layers.RandomFlip(config.flip, seed=seed, name="flip")


# Augmentation name -> builder(keras, config, seed) returning a layer, or None when its strength is zero.
AUGMENTATIONS: dict[str, Callable] = {
    "flip": _flip,
    "rotation": lambda keras, c, seed: c.rotation and keras.layers.RandomRotation(c.rotation, seed=seed),
    "zoom": lambda keras, c, seed: c.zoom and keras.layers.RandomZoom(c.zoom, seed=seed),
    "translation": lambda keras, c, seed: (
        c.translation and keras.layers.RandomTranslation(c.translation, c.translation, seed=seed)
    ),
    "brightness": lambda keras, c, seed: (
        c.brightness and keras.layers.RandomBrightness(c.brightness, value_range=(0, 255), seed=seed)
    ),
    "contrast": lambda keras, c, seed: (
        c.contrast and keras.layers.RandomContrast(c.contrast, value_range=(0, 255), seed=seed)
    ),
}


def build_augmenter(config: AugmentConfig, seed: int):
    """A keras.Sequential of the augmentations with a non-zero strength, or None when all are off."""
    import keras

    if config.flip not in FLIP_MODES:
        raise ValueError(f"flip mode {config.flip!r}")  # the CLI only offers FLIP_MODES
    layers = [layer for layer in (build(keras, config, seed) for build in AUGMENTATIONS.values()) if layer]
    return keras.Sequential(layers, name="augmentation") if layers else None
