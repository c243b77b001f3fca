"""ONNX conversion through tf2onnx, with a dynamic batch dimension and named input and output."""

from __future__ import annotations

import numpy as np

from edgetl.errors import MissingExtraError
from edgetl.models.classifier import INPUT_NAME

DEFAULT_OPSET = 17


def convert_onnx(model, calibration_pixels: np.ndarray | None = None, opset: int = DEFAULT_OPSET):
    """The ONNX ModelProto (metadata is attached by the caller before it is serialised)."""
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError:
        raise MissingExtraError("tf2onnx", "train", "ONNX export") from None
    height, width = model.input_shape[1:3]
    signature = (tf.TensorSpec((None, height, width, 3), tf.float32, name=INPUT_NAME),)
    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    return model_proto
