"""Builds the classifier: raw pixels in, backbone preprocessing inside, backbone, head, probabilities out.

The preprocessing is made of built-in Keras layers, so every export (TFLite, ONNX) carries it and a device
feeds 0-255 RGB pixels straight in, and a Keras file loads in safe mode without custom code.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from edgetl.errors import WeightsError
from edgetl.models.backbones import BackboneSpec
from edgetl.runtime.metadata import Normalization

log = logging.getLogger(__name__)

INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
BACKBONE_LAYER_NAME = "backbone"
# The pooled backbone features: the head starts after it, and stage 1 caches its output (training/features.py).
POOL_LAYER_NAME = "pool"


@dataclass(frozen=True)
class HeadConfig:
    dropout: float = 0.2
    hidden_units: int = 0


def preprocessing_layers(normalization: Normalization) -> list:
    """Keras layers that turn 0-255 RGB pixels into what the backbone expects."""
    import keras
    import numpy as np

    layers = []
    if normalization.mode == "caffe":
        # RGB -> BGR and mean subtraction in one frozen 1x1 convolution: a plain op every converter quantises.
        flip = np.zeros((1, 1, 3, 3), dtype="float32")
        for channel in range(3):
            flip[0, 0, channel, 2 - channel] = 1.0
        bias = -np.asarray(normalization.mean, dtype="float32")
        conv = keras.layers.Conv2D(3, 1, name="caffe_preprocessing", trainable=False)
        layers.append((conv, [flip, bias]))
        return layers
    if normalization.scale != 1.0 or normalization.offset != 0.0:
        rescale = keras.layers.Rescaling(normalization.scale, normalization.offset, name="rescaling")
        layers.append((rescale, None))
    if normalization.mean != (0.0, 0.0, 0.0) or normalization.std != (1.0, 1.0, 1.0):
        variance = [s * s for s in normalization.std]
        normalize = keras.layers.Normalization(mean=list(normalization.mean), variance=variance, name="normalization")
        layers.append((normalize, None))
    return layers


def _resolve_weights(weights: str) -> str | None:
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"--weights {weights}: no such file (use imagenet, none, or a path to a weights file)")
    return str(path)


def build_backbone(spec: BackboneSpec, image_size: int, alpha: float | None, weights: str):
    import keras

    constructor = getattr(keras.applications, spec.constructor)
    kwargs = {"input_shape": (image_size, image_size, 3), "include_top": False}
    if spec.alphas:
        kwargs["alpha"] = alpha if alpha is not None else 1.0
    keras_weights = _resolve_weights(weights)
    try:
        backbone = constructor(weights=keras_weights, **kwargs)
    except Exception as error:  # keras.utils.get_file raises a bare Exception when the download fails
        message = str(error)
        if keras_weights == "imagenet" and ("fetch failure" in message or "URL" in message):
            url = re.search(r"https?://\S+", message)
            wanted = url.group(0).rstrip(":") if url else "the ImageNet weights file"
            raise WeightsError(
                f"--weights imagenet: cannot download {wanted} (no network?); put that file in "
                f"~/.keras/models/, or pass --weights PATH to a local copy, or --weights none"
            ) from None
        if keras_weights not in (None, "imagenet"):
            raise WeightsError(f"--weights {weights}: cannot load into {spec.name} ({message})") from None
        raise
    backbone.name = BACKBONE_LAYER_NAME
    return backbone


def build_classifier(
    spec: BackboneSpec,
    num_classes: int,
    image_size: int,
    alpha: float | None,
    weights: str,
    head: HeadConfig,
):
    """The full model. With pretrained weights the backbone starts frozen and always runs its BatchNorm in
    inference mode (so a later fine-tune does not wreck the statistics); from scratch it trains whole."""
    import keras

    backbone = build_backbone(spec, image_size, alpha, weights)
    from_scratch = weights == "none"
    if from_scratch:
        # Keras' default BatchNorm momentum (0.99, MobileNetV2 0.999) leaves the moving statistics near their
        # initial values after the few hundred steps a small dataset gives: inference would be at chance.
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
    else:
        backbone.trainable = False

    pixels = keras.Input((image_size, image_size, 3), dtype="float32", name=INPUT_NAME)
    x = pixels
    for layer, layer_weights in preprocessing_layers(spec.normalization):
        x = layer(x)
        if layer_weights is not None:
            layer.set_weights(layer_weights)
    x = backbone(x) if from_scratch else backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER_NAME)(x)
    x = keras.layers.Dropout(head.dropout, name="dropout")(x)
    if head.hidden_units:
        x = keras.layers.Dense(head.hidden_units, activation="relu", name="hidden")(x)
        x = keras.layers.Dropout(head.dropout, name="hidden_dropout")(x)
    # float32 output even under mixed precision: softmax in float16 loses small probabilities.
    probabilities = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=OUTPUT_NAME)(x)
    return keras.Model(pixels, probabilities, name=f"edgetl_{spec.name}")
