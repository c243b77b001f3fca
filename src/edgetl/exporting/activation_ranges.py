"""Percentile calibration for the TFLite converter's int8: activation ranges that leave out the rarest extremes.

The converter calibrates by min-max: each activation's range is the most extreme value any calibration image gave.
On an ImageNet network a few images drive some activations far beyond where nearly all values lie, and the range
that covers them spends the 256 int8 steps on values that almost never occur, so the common values get coarse
steps. Percentile calibration clips each range to the values all but a small share of the calibration
activations lie within: the rare extreme saturates, the common value is finer. The cut is exact: the most
extreme values of each activation over all calibration images are kept, as many as the share cuts off, so any
number of images calibrates in little memory. The converter keeps its calibrated ranges as min/max in the float
model it returns when asked to calibrate only; they are rewritten here before it quantises. (ONNX files use
onnxruntime's own percentile calibrator.)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Hashable
from typing import TypeVar

import numpy as np

from edgetl.errors import EdgetlError

K = TypeVar("K", bound=Hashable)
# Images per interpreter call while the activations are measured: fewer calls, activations still small.
BATCH_IMAGES = 16
# QuantizationParameters' min and max fields (vtable offsets in the TFLite schema).
MIN_FIELD, MAX_FIELD = 4, 6


class _Tails:
    """The `keep` largest and smallest values one tensor has shown so far: all a percentile needs of them."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.high = np.empty(0, np.float32)
        self.low = np.empty(0, np.float32)

    def add(self, values: np.ndarray) -> None:
        # Once `keep` values are held, only a value beyond the current cut can move it: one comparison pass leaves
        # the few candidates, and only they are sorted in.
        high, low = values, values
        if self.high.size == self.keep:
            high = values[values > self.high.min()]
        if self.low.size == self.keep:
            low = values[values < self.low.max()]
        self.high = self._extreme(np.concatenate([self.high, high]), largest=True)
        self.low = self._extreme(np.concatenate([self.low, low]), largest=False)

    def _extreme(self, values: np.ndarray, largest: bool) -> np.ndarray:
        if values.size <= self.keep:
            return values
        if largest:
            return np.partition(values, values.size - self.keep)[values.size - self.keep :]
        return np.partition(values, self.keep - 1)[: self.keep]

    def range(self) -> tuple[float, float]:
        """The `keep`-th smallest and largest value seen, widened to hold 0 (int8 must represent zero exactly)."""
        return min(float(self.low.max()), 0.0), max(float(self.high.min()), 0.0)


def _ranged_tensors(subgraph) -> dict[int, object]:
    """Tensor index -> its QuantizationParameters, for every calibrated activation except the model's inputs
    (whose range is pinned to raw pixels)."""
    inputs = {subgraph.Inputs(i) for i in range(subgraph.InputsLength())}
    ranged = {}
    for index in range(subgraph.TensorsLength()):
        quantization = subgraph.Tensors(index).Quantization()
        if index in inputs or quantization is None:
            continue
        if quantization.MinLength() == 1 and quantization.MaxLength() == 1:
            ranged[index] = quantization
    return ranged


def write_range(buffer: bytearray, quantization, low: float, high: float) -> None:
    """Overwrite one tensor's calibrated min/max (one value each) in the flatbuffer `buffer`, in place."""
    table = quantization._tab
    struct.pack_into("<f", buffer, table.Vector(table.Offset(MIN_FIELD)), low)
    struct.pack_into("<f", buffer, table.Vector(table.Offset(MAX_FIELD)), high)


def percentile_cuts(
    activations: Callable[[np.ndarray], dict[K, np.ndarray]], calibration_pixels: np.ndarray, percentile: float
) -> dict[K, tuple[float, float]]:
    """Per activation, the range all but (100 - `percentile`)% of its values over the calibration images lie
    within. `activations` runs the float model on a batch of images and returns each activation's values."""
    images = len(calibration_pixels)
    tails: dict[K, _Tails] = {}
    for start in range(0, images, BATCH_IMAGES):
        batch = calibration_pixels[start : start + BATCH_IMAGES].astype(np.float32)
        for key, values in activations(batch).items():
            values = np.asarray(values, np.float32).ravel()
            if key not in tails:  # the first batch tells how many values an image gives, so how many to cut
                per_image = values.size / len(batch)
                tails[key] = _Tails(math.floor(images * per_image * (100.0 - percentile) / 100.0) + 1)
            tails[key].add(values)
    return {key: tail.range() for key, tail in tails.items()}


def percentile_ranges(calibrated: bytes, calibration_pixels: np.ndarray, percentile: float) -> bytes:
    """`calibrated` (the TFLite converter's calibrate-only output) with every activation's range clipped to its
    percentile cut; never widened."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.python import schema_py_generated as schema

    buffer = bytearray(calibrated)
    ranged = _ranged_tensors(schema.Model.GetRootAs(buffer, 0).Subgraphs(0))
    if not ranged:
        raise EdgetlError("the calibrated TFLite model has no activation ranges to clip; please report this")
    interpreter = Interpreter(
        model_content=bytes(calibrated),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    input_index = interpreter.get_input_details()[0]["index"]

    def activations(batch: np.ndarray) -> dict[int, np.ndarray]:
        interpreter.resize_tensor_input(input_index, list(batch.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        return {index: interpreter.get_tensor(index) for index in ranged}

    cuts = percentile_cuts(activations, calibration_pixels, percentile)
    for index, (low, high) in cuts.items():
        quantization = ranged[index]
        write_range(buffer, quantization, max(low, quantization.Min(0)), min(high, quantization.Max(0)))
    return bytes(buffer)
