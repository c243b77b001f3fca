"""Activation ranges for int8, measured by edgetl batch by batch for both quantisers: min-max and percentile.

Min-max takes each activation's range as the most extreme values any calibration image gave. On an ImageNet network
a few images drive some activations far beyond where nearly all values lie, and the range that covers them spends
the 256 int8 steps on values that almost never occur, so the common values get coarse steps. Percentile
calibration clips each range to the values all but a small share of the calibration activations lie within: the
rare extreme saturates, the common value is finer. The cut is exact: the most extreme values of each activation
over all calibration images are kept, as many as the share cuts off.

Both come out of one pass (`ActivationStats`): the activations of a batch of images are folded into per-tensor
tails and dropped, and a batch holds as many images as fit ACTIVATION_BATCH_BYTES, so memory depends neither on
the number of calibration images nor on the method. The TFLite converter's calibrate-only output keeps the ranges
as min/max in the float model; edgetl writes its own there before the converter quantises (`write_range`).
onnxruntime reads them from its calibration cache (exporting/onnx.py).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

import numpy as np

from edgetl.errors import EdgetlError

K = TypeVar("K", bound=Hashable)
# The activations of one batch are held at once while they are measured: a batch holds as many images as fit this,
# at least one and at most MAX_BATCH_IMAGES (fewer calls; larger batches gain nothing more).
ACTIVATION_BATCH_BYTES = 256 * 2**20
MAX_BATCH_IMAGES = 32
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

    def extremes(self) -> tuple[float, float]:
        """The smallest and largest value seen."""
        return float(self.low.min()), float(self.high.max())


def images_per_batch(bytes_per_image: int, budget: int | None = None) -> int:
    """How many images' activations of `bytes_per_image` each one batch may hold (within ACTIVATION_BATCH_BYTES,
    read when called, unless `budget` is given)."""
    budget = ACTIVATION_BATCH_BYTES if budget is None else budget
    return int(max(1, min(MAX_BATCH_IMAGES, budget // max(1, bytes_per_image))))


class ActivationStats:
    """Per activation, what min-max and percentile calibration need of all its values over `images` calibration
    images (`percentile` says how many extremes the tails keep), merged batch by batch."""

    def __init__(self, images: int, percentile: float) -> None:
        self.images, self.percentile = images, percentile
        self.tails: dict = {}

    def add(self, activations: dict, batch_images: int) -> None:
        for key, values in activations.items():
            values = np.asarray(values, np.float32).ravel()
            if key not in self.tails:  # the first batch tells how many values an image gives, so how many to cut
                per_image = values.size / batch_images
                keep = math.floor(self.images * per_image * (100.0 - self.percentile) / 100.0) + 1
                self.tails[key] = _Tails(keep)
            self.tails[key].add(values)

    def ranges(self, method: str) -> dict:
        """Each activation's range by `method`: "minmax", or "percentile" (never wider than min-max's); both hold
        0, as the converters' own calibration does (int8 must represent zero exactly)."""
        if method not in ("minmax", "percentile"):
            raise EdgetlError(f"calibration method {method!r}: unknown; one of minmax, percentile")
        ranges = {}
        for key, tail in self.tails.items():
            lowest, highest = tail.extremes()
            low, high = min(lowest, 0.0), max(highest, 0.0)
            if method == "percentile":
                cut_low, cut_high = tail.range()
                low, high = max(low, cut_low), min(high, cut_high)
            ranges[key] = (low, high)
        return ranges


def measure(
    activations: Callable[[np.ndarray], dict[K, np.ndarray]],
    batches: Iterable[np.ndarray],
    images: int,
    percentile: float,
) -> ActivationStats:
    """The statistics of every activation `activations` (the float model run on a batch of images) returns, over
    `batches` of `images` images in all."""
    stats = ActivationStats(images, percentile)
    for batch in batches:
        stats.add(activations(batch), len(batch))
    return stats


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


def tflite_activation_stats(calibrated: bytes, sample, percentile: float) -> ActivationStats:
    """The statistics of every calibrated activation of `calibrated` (the converter's calibrate-only output), keyed
    by tensor name (which another conversion of the same model repeats), over the images of `sample`
    (exporting/calibration.ImageSample), in memory-bounded batches."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.python import schema_py_generated as schema

    ranged = _ranged_tensors(schema.Model.GetRootAs(calibrated, 0).Subgraphs(0))
    if not ranged:
        raise EdgetlError("the calibrated TFLite model has no activation ranges to measure; please report this")
    interpreter = Interpreter(
        model_content=bytes(calibrated),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    input_index = interpreter.get_input_details()[0]["index"]
    # Every tensor is kept for a whole batch (preserve_all_tensors): the batch is sized by all of them.
    per_image = sum(
        int(np.prod(detail["shape"][1:], dtype=np.int64)) * np.dtype(detail["dtype"]).itemsize
        for detail in interpreter.get_tensor_details()
        if len(detail["shape"]) > 0
    )

    subgraph = schema.Model.GetRootAs(calibrated, 0).Subgraphs(0)
    names = {index: subgraph.Tensors(index).Name().decode() for index in ranged}

    def activations(batch: np.ndarray) -> dict[str, np.ndarray]:
        interpreter.resize_tensor_input(input_index, list(batch.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        return {names[index]: interpreter.get_tensor(index) for index in ranged}

    return measure(activations, sample.batches(images_per_batch(per_image)), len(sample), percentile)


def with_ranges(calibrated: bytes, ranges: dict[str, tuple[float, float]]) -> bytes:
    """`calibrated` with the activation ranges of `ranges` (tensor name -> min, max) written in; tensors not in it
    (the model's inputs, pinned to raw pixels) keep theirs."""
    from tensorflow.lite.python import schema_py_generated as schema

    buffer = bytearray(calibrated)
    subgraph = schema.Model.GetRootAs(buffer, 0).Subgraphs(0)
    for index, quantization in _ranged_tensors(subgraph).items():
        found = ranges.get(subgraph.Tensors(index).Name().decode())
        if found is not None:
            write_range(buffer, quantization, *found)
    return bytes(buffer)


def percentile_ranges(calibrated: bytes, calibration_pixels, percentile: float) -> bytes:
    """`calibrated` (the TFLite converter's calibrate-only output) with every activation's range clipped to its
    percentile cut over `calibration_pixels` (an array or an ImageSample); never widened."""
    from tensorflow.lite.python import schema_py_generated as schema

    from edgetl.exporting.calibration import as_sample

    subgraph = schema.Model.GetRootAs(calibrated, 0).Subgraphs(0)
    before = {subgraph.Tensors(i).Name().decode(): q for i, q in _ranged_tensors(subgraph).items()}
    stats = tflite_activation_stats(calibrated, as_sample(calibration_pixels), percentile)
    ranges = {}
    for name, (low, high) in stats.ranges("percentile").items():
        ranges[name] = (max(low, before[name].Min(0)), min(high, before[name].Max(0)))
    return with_ranges(calibrated, ranges)
