"""Bias correction for int8 (Nagel et al., "Data-Free Quantization", 2019, section 4.2).

Rounding a convolution's weights to int8 shifts the mean of its output: the rounding error of a kernel does not
sum to zero, and on a near-constant input (the first layers of an ImageNet network see much of that) the shift is
several quantisation steps. It is the main loss of int8 on MobileNetV2: the first depthwise convolution has
high-gain filters that sum to almost zero. Since a convolution is linear, the mean shift over the calibration
images is the convolution of the mean input with the weight error; subtracting it from the bias (the beta of the
BatchNormalization that follows, which the converters fold into the convolution) removes it.

The weight error is the one both quantisers make: BatchNorm folded into the kernel, then per output channel
symmetric int8, scale max|w| / 127.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from edgetl.exporting.int8 import INT8_WEIGHT_MAX
from edgetl.exporting.keras_passes import keras_batch_size, walk_layers
from edgetl.exporting.weight_scales import channel_scales

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Correction:
    """What bias correction took off a convolution's output: `shift` per output channel, taken from the bias of
    `holder` (the BatchNormalization after the convolution, whose beta the converters fold into its bias, or the
    convolution itself)."""

    holder: str
    shift: np.ndarray


@dataclass
class _Correctable:
    conv: object  # keras Conv2D or DepthwiseConv2D
    bias_holder: object  # the BatchNormalization after it, or the convolution itself (its bias)
    weight_error: np.ndarray  # folded kernel's int8 rounding error, in the convolution's kernel layout
    depthwise: bool
    input_sum: np.ndarray | float = 0.0
    images: int = 0


def _producer(layer):
    """The layer whose output `layer` takes (its first input in the functional graph), or None."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1 or not nodes[0].input_tensors:
        return None
    history = getattr(nodes[0].input_tensors[0], "_keras_history", None)
    return history.operation if history else None


def _rounding_error(kernel: np.ndarray, channel_scale: np.ndarray, depthwise: bool, pair_limited: bool) -> np.ndarray:
    """The error of per-output-channel symmetric int8 rounding of the BatchNorm-folded kernel, with the scales
    the quantiser uses (weight_scales.channel_scales; pair-limited only outside depthwise layers)."""
    if depthwise:  # (kh, kw, in, multiplier): output channel in * multiplier + m
        folded = kernel * channel_scale.reshape(kernel.shape[2], kernel.shape[3])
        by_channel = folded.reshape(-1, kernel.shape[2] * kernel.shape[3]).T
        scale = channel_scales(by_channel).reshape(1, 1, kernel.shape[2], kernel.shape[3])
    else:  # (kh, kw, in, out)
        folded = kernel * channel_scale
        scale = channel_scales(folded.reshape(-1, kernel.shape[3]).T, pair_limited).reshape(1, 1, 1, -1)
    quantized = np.clip(np.round(folded / scale), -INT8_WEIGHT_MAX, INT8_WEIGHT_MAX)
    return (quantized * scale - folded).astype(np.float32)


def _convolutions_with_bias_holders(model) -> Iterator[tuple[object, object, bool]]:
    """Each convolution bias correction can correct, the layer holding its bias (the BatchNormalization after it,
    whose beta the converters fold into its bias, or the convolution itself), and whether it is depthwise."""
    import keras

    layers = list(walk_layers(model))
    following = {}
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            following[id(_producer(layer))] = layer
    for layer in layers:
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        if not (depthwise or type(layer) is keras.layers.Conv2D) or layer.data_format != "channels_last":
            continue
        if not depthwise and layer.groups != 1:
            continue
        batch_norm = following.get(id(layer))
        if batch_norm is not None and batch_norm.axis in (-1, 3) and batch_norm.scale and batch_norm.center:
            yield layer, batch_norm, depthwise
        elif batch_norm is None and layer.use_bias:
            yield layer, layer, depthwise


def bias_holders(model) -> dict[str, str]:
    """Per convolution bias correction can correct, the name of the layer holding its bias."""
    return {layer.name: holder.name for layer, holder, _ in _convolutions_with_bias_holders(model)}


def _correctable_layers(model, keep_float: Callable[[str], bool], pair_limited: bool) -> list[_Correctable]:
    found = []
    for layer, holder, depthwise in _convolutions_with_bias_holders(model):
        if keep_float(layer.name):
            continue
        kernel = np.asarray(layer.kernel)
        if holder is layer:
            channel_scale = np.ones(kernel.shape[2] * kernel.shape[3] if depthwise else kernel.shape[3])
        else:
            channel_scale = np.asarray(holder.gamma) / np.sqrt(np.asarray(holder.moving_variance) + holder.epsilon)
        error = _rounding_error(kernel, channel_scale, depthwise, pair_limited)
        found.append(_Correctable(layer, holder, error, depthwise))
    return found


@contextmanager
def _summing_inputs(layers: list[_Correctable], sums: dict) -> Iterator[None]:
    """While inside, a call of those convolutions (traced into a graph) adds its input batch, summed over the
    images, and the number of images to `sums` under the layer's name (a layer called twice adds both calls)."""
    import tensorflow as tf

    def summing(entry: _Correctable, call):
        def summing_call(inputs, *args, **kwargs):
            # float64, as a mean over many images' pixels needs: float32 sums move the corrections' last bits.
            summed, images = tf.reduce_sum(tf.cast(inputs, tf.float64), axis=0), tf.shape(inputs)[0]
            if entry.conv.name in sums:
                before, counted = sums[entry.conv.name]
                summed, images = before + summed, counted + images
            sums[entry.conv.name] = (summed, images)
            return call(inputs, *args, **kwargs)

        return summing_call

    for entry in layers:
        entry.conv.call = summing(entry, entry.conv.call)
    try:
        yield
    finally:
        for entry in layers:
            del entry.conv.call  # the class's own method again


def _input_summer(model, layers: list[_Correctable]) -> Callable:
    """batch -> ({layer name: (its inputs summed over the batch, how many inputs)}, the model's outputs), one
    compiled graph for every batch: the model runs as fast as Keras' predict and holds only what one batch needs
    (an eager call keeps far more in TensorFlow's memory pool). Traced once for batches of any size (a trace of a
    large network costs as much as running dozens of images)."""
    import tensorflow as tf

    signature = [tf.TensorSpec((None, *tuple(model.input_shape)[1:]), tf.float32)]

    @tf.function(input_signature=signature)
    def summed(batch):
        sums: dict = {}
        with _summing_inputs(layers, sums):
            outputs = model(batch, training=False)
        return sums, outputs

    return summed


class InputSums:
    """The summed input of every correctable convolution over the first images of the calibration sample, for
    each sample size asked so far: a larger sample continues from the largest one measured below it, so the
    ladder's rungs (the same first images, more of them, the same again with float islands) run the float model
    over each image once."""

    def __init__(self) -> None:
        self.measured: dict[int, dict[str, tuple[np.ndarray | float, int]]] = {0: {}}
        self._summer: tuple[object, list[_Correctable], Callable] | None = None  # (model, its layers, graph)

    def over(self, model, calibration, batch_size: int) -> dict[str, tuple[np.ndarray | float, int]]:
        """layer name -> (summed input, images) over the first len(calibration) images of `calibration`."""
        count = len(calibration)
        if count not in self.measured:
            self._measure(model, calibration, count, batch_size)
        return self.measured[count]

    def with_outputs(self, model, calibration, counts: list[int], batch_size: int) -> np.ndarray:
        """The model's outputs for the first max(counts) images of `calibration`, from the pass that measures the
        sums over the first `count` of them for each of `counts`, batch for batch as `over` measures them one
        count after another (the same sums to the bit): where the calibration images are also the images Keras'
        predictions are needed for, the model runs over each once for both."""
        outputs: list[np.ndarray] = []
        for count in sorted(counts):
            self._measure(model, calibration, count, batch_size, outputs)
        return np.concatenate(outputs, axis=0)

    def _measure(self, model, calibration, count: int, batch_size: int, outputs: list | None = None) -> None:
        """Measure the sums over the first `count` images, going on from the largest sample measured below it;
        the model's outputs for the images run are appended to `outputs`."""
        start = max(measured for measured in self.measured if measured <= count)
        if self._summer is None or self._summer[0] is not model:
            layers = _correctable_layers(model, lambda name: False, pair_limited=False)
            self._summer = (model, layers, _input_summer(model, layers))
        _, layers, summed = self._summer
        totals = {entry.conv.name: self.measured[start].get(entry.conv.name, (0.0, 0)) for entry in layers}
        for first in range(start, count, batch_size):
            batch = np.asarray(calibration[first : min(count, first + batch_size)], np.float32)
            sums, batch_outputs = summed(batch)
            for name, (batch_sum, counted) in sums.items():
                total, images = totals[name]
                totals[name] = (total + batch_sum.numpy(), images + int(counted))
            if outputs is not None:
                outputs.append(np.asarray(batch_outputs))
        self.measured[count] = totals


def _mean_output_shift(entry: _Correctable) -> np.ndarray:
    import tensorflow as tf

    conv = entry.conv
    mean_input = tf.constant((entry.input_sum / entry.images)[np.newaxis], tf.float32)
    strides, padding = (1, *conv.strides, 1), conv.padding.upper()
    if entry.depthwise:
        shifted = tf.nn.depthwise_conv2d(mean_input, entry.weight_error, strides, padding, dilations=conv.dilation_rate)
    else:
        shifted = tf.nn.conv2d(mean_input, entry.weight_error, strides, padding, dilations=conv.dilation_rate)
    return shifted.numpy().mean(axis=(0, 1, 2))


@contextmanager
def bias_corrected(
    model,
    calibration: np.ndarray,
    keep_float: Callable[[str], bool] = lambda name: False,
    batch_size: int | None = None,
    pair_limited: bool = False,
    sums: InputSums | None = None,
) -> Iterator[dict[str, Correction]]:
    """Inside, `model`'s biases are corrected for int8 weight rounding (measured on `calibration`, raw pixels as
    the model takes them); on leaving, the original weights are back. Yields the corrections made, by
    convolution.
    Convolutions for which `keep_float(name)` is true stay in float, so they are not corrected; those that are not
    depthwise get pair-limited scales when `pair_limited` (a portable ONNX file, weight_scales.py). `sums`, kept
    by the caller across calls on the same model, measures each calibration image once for all of them.

    The corrected model is for int8 conversion only: in float it is slightly off, by design."""
    batch_size = batch_size or keras_batch_size(model)
    measured = (sums or InputSums()).over(model, calibration, batch_size)
    layers = _correctable_layers(model, keep_float, pair_limited)
    for entry in layers:
        entry.input_sum, entry.images = measured.get(entry.conv.name, (0.0, 0))
    saved = [(entry.bias_holder, entry.bias_holder.get_weights()) for entry in layers]
    corrections = {}
    try:
        for entry in layers:
            if entry.images == 0:
                continue
            shift = _mean_output_shift(entry)
            weights = entry.bias_holder.get_weights()
            # BatchNormalization: [gamma, beta, mean, variance]; a convolution: [kernel, bias].
            weights[1] = weights[1] - shift.astype(weights[1].dtype)
            entry.bias_holder.set_weights(weights)
            corrections[entry.conv.name] = Correction(entry.bias_holder.name, shift.astype(np.float32))
        log.info("bias correction on %d convolution(s)", len(corrections))
        yield corrections
    finally:
        for holder, weights in saved:
            holder.set_weights(weights)


def folded_biases(model, holders: dict[str, str]) -> dict[str, list[np.ndarray]]:
    """Per convolution of `holders` (convolution -> the layer holding its bias: a correction's holder, or
    `bias_holders`), the values in float64 a converter may fold its bias into from `model`'s weights as they are
    now: its BatchNormalization folded in with the convolution's own bias, gamma (bias - mean) /
    sqrt(variance + epsilon) + beta, or without it (tf2onnx leaves a convolution's own bias in the convolution and
    adds the BatchNormalization's after it); else its own bias. Either moves by exactly a correction's shift."""
    layers = {layer.name: layer for layer in walk_layers(model)}
    folded = {}
    for name, holder_name in holders.items():
        conv, holder = layers.get(name), layers.get(holder_name)
        if conv is None or holder is None:
            continue
        bias = np.asarray(conv.bias, np.float64) if conv.use_bias else 0.0
        if holder is conv:
            folded[name] = [bias]
            continue
        gamma, beta, mean, variance = (np.asarray(weight, np.float64) for weight in holder.get_weights())
        scale = gamma / np.sqrt(variance + holder.epsilon)
        folded[name] = [scale * (bias - mean) + beta, beta - scale * mean] if conv.use_bias else [beta - scale * mean]
    return folded


def holders_of(corrections: dict[str, Correction]) -> dict[str, str]:
    """Per corrected convolution, the layer its correction was taken from."""
    return {name: correction.holder for name, correction in corrections.items()}


def holds_bias(held: np.ndarray, expected: np.ndarray) -> bool:
    """Whether a graph's bias `held` (float32, as a converter folded it) is the value `expected` (float64)."""
    held, expected = np.asarray(held, np.float64).ravel(), np.asarray(expected, np.float64).ravel()
    tolerance = 1e-5 * max(1.0, float(np.abs(expected).max(initial=0.0)))
    return held.size == expected.size and bool(np.allclose(held, expected, rtol=1e-4, atol=tolerance))
