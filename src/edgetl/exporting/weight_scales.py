"""Per-output-channel symmetric int8 weight scales: the one rule the ONNX quantiser is given (through onnxruntime's
tensor overrides) and bias correction simulates.

The usual scale maps a channel's largest weight to 127. A pair-limited scale maps the sum of its two largest
magnitudes to 127, so that no two int8 weights of the channel add up to more than 128 in magnitude: then no pair of
uint8 x int8 products exceeds 255 x 128 = 32640, and onnxruntime's x86-64 kernels without VNNI, which add such
pairs in 16 bits, never saturate, whichever two weights they pair. A channel whose largest weight stands out keeps
nearly 8 bits; one with two equal largest weights gets 7.
"""

from __future__ import annotations

import numpy as np

from edgetl.exporting.int8 import INT8_WEIGHT_MAX


def channel_scales(by_channel: np.ndarray, pair_limited: bool = False) -> np.ndarray:
    """(channels, weights per channel) float weights -> (channels,) scales, never 0."""
    magnitudes = np.abs(by_channel.astype(np.float64))
    if pair_limited and magnitudes.shape[1] >= 2:
        largest = np.partition(magnitudes, -2, axis=1)[:, -2:].sum(axis=1)
    else:
        largest = magnitudes.max(axis=1)
    scales = largest / INT8_WEIGHT_MAX
    return np.where(scales == 0, 1.0, scales).astype(np.float32)
