"""TFLite conversion: float32, and full-integer int8 calibrated on real training images."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def convert_float32(model, calibration_pixels: np.ndarray | None = None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return converter.convert()


def convert_int8(model, calibration_pixels: np.ndarray) -> bytes:
    """int8 weights (per channel) and activations, int8 input and output.

    The calibration pixels are raw 0-255 images, exactly what the model's input sees on a device; the input's
    quantisation parameters then map pixels to int8 nearly losslessly (scale ~1, zero point -128).
    """
    import tensorflow as tf

    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for image in calibration_pixels:
            yield [image[np.newaxis].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    # Integer-only kernels: an op that cannot be quantised fails the conversion instead of silently
    # falling back to float (Keras' own exporter adds SELECT_TF_OPS, wrong for an int8 edge target).
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()
