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

import functools
import itertools
import math
import struct
from collections.abc import Callable, Hashable
from typing import TypeVar

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.exporting.memory import collect_garbage
from edgetl.runtime.bounds import cores

K = TypeVar("K", bound=Hashable)
# The activations of one batch are held at once while they are measured: a batch holds as many images as fit this,
# at least one and at most MAX_BATCH_IMAGES (fewer calls; larger batches gain nothing more).
ACTIVATION_BATCH_BYTES = 64 * 2**20
# Engines that run on one core each (LiteRT's interpreter) measure batches side by side while their batches hold
# this much together: a MobileNetV2's at 224 px (two images, 60 MB a batch) go two at a time, an Xception's at 299
# px (one image, more than this alone) one.
PARALLEL_BATCH_BYTES = 2 * ACTIVATION_BATCH_BYTES
MAX_BATCH_IMAGES = 32
# Values a pass over a batch's activation takes at a time where it needs a scratch copy (fits the CPU's L2 cache).
SCRATCH_VALUES = 2**16
# QuantizationParameters' min and max fields (vtable offsets in the TFLite schema).
MIN_FIELD, MAX_FIELD = 4, 6


class _Tails:
    """The `keep` largest and smallest values one tensor has shown so far: all a percentile of them needs, for
    any number of values up to what `keep` was sized for."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.high = np.empty(0, np.float32)
        self.low = np.empty(0, np.float32)

    def add(self, values: np.ndarray, lowest: float, highest: float) -> None:
        """Fold in `values`, whose extremes are `lowest` and `highest`."""
        # Once `keep` values are held, only a value beyond the current cut can move it: one comparison pass leaves
        # the few candidates, and only they are sorted in. Where the values' extreme does not pass the cut (a ReLU's
        # zeros against its low tail, most batches against a settled high tail), none can: no pass at all.
        if self.high.size < self.keep:
            self.high = self._extreme(np.concatenate([self.high, values]), largest=True)
        elif highest > (cut := self.high.min()):
            self.high = self._extreme(np.concatenate([self.high, values[values > cut]]), largest=True)
        if self.low.size < self.keep:
            self.low = self._extreme(np.concatenate([self.low, values]), largest=False)
        elif lowest < (cut := self.low.max()):
            self.low = self._extreme(np.concatenate([self.low, values[values < cut]]), largest=False)

    def _extreme(self, values: np.ndarray, largest: bool) -> np.ndarray:
        """The `keep` largest (or smallest) of `values`, in an array of their own: a slice of the partitioned copy
        would keep all of it alive, as large as the activation (on an Xception at 299 px, 360 MB for one image's
        activations, held from the first batch to the end of the measurement)."""
        if values.size <= self.keep:
            return values
        if largest:
            return np.partition(values, values.size - self.keep)[values.size - self.keep :].copy()
        return np.partition(values, self.keep - 1)[: self.keep].copy()

    def cut(self, keep: int) -> tuple[float, float]:
        """The `keep`-th smallest and largest value seen (`keep` at most what the tails hold)."""
        high = np.partition(self.high, max(0, self.high.size - keep))[max(0, self.high.size - keep)]
        low = np.partition(self.low, min(keep, self.low.size) - 1)[min(keep, self.low.size) - 1]
        return float(low), float(high)

    def range(self) -> tuple[float, float]:
        """The `keep`-th smallest and largest value seen, widened to hold 0 (int8 must represent zero exactly)."""
        low, high = self.cut(self.keep)
        return min(low, 0.0), max(high, 0.0)


def images_per_batch(bytes_per_image: int, budget: int | None = None) -> int:
    """How many images' activations of `bytes_per_image` each one batch may hold (within ACTIVATION_BATCH_BYTES,
    read when called, unless `budget` is given)."""
    budget = ACTIVATION_BATCH_BYTES if budget is None else budget
    return int(max(1, min(MAX_BATCH_IMAGES, budget // max(1, bytes_per_image))))


def smallest_magnitude(values: np.ndarray) -> float:
    """The smallest absolute value of `values`, a slice at a time: np.abs of a whole batch's activation would make
    a new array as large, and the first writes to freshly mapped memory cost many times the pass itself."""
    values = np.asarray(values, np.float32).ravel()
    scratch = np.empty(min(values.size, SCRATCH_VALUES), np.float32)
    smallest = np.inf
    for start in range(0, values.size, SCRATCH_VALUES):
        part = values[start : start + SCRATCH_VALUES]
        smallest = min(smallest, float(np.abs(part, out=scratch[: part.size]).min()))
    return smallest


class ActivationStats:
    """Per activation, what min-max and percentile calibration need of all its values over the images seen,
    merged batch by batch: the extremes, and the exact tails a percentile cuts off each side, sized for up to
    `images` images, so the percentile of any number of images up to that is exact."""

    def __init__(self, images: int, percentile: float) -> None:
        self.images, self.percentile = images, percentile
        self.seen = 0
        self.extremes: dict = {}
        self.per_image: dict = {}
        self.tails: dict = {}

    def _keep(self, per_image: float, images: int) -> int:
        return math.floor(images * per_image * (100.0 - self.percentile) / 100.0) + 1

    def add(self, activations: dict, batch_images: int) -> None:
        for key, values in activations.items():
            values = np.asarray(values, np.float32).ravel()
            low, high = float(values.min()), float(values.max())
            if key not in self.tails:  # the first batch tells how many values an image gives, so how many to cut
                self.per_image[key] = values.size / batch_images
                keep = self._keep(self.per_image[key], max(self.images, self.seen + batch_images))
                self.tails[key] = _Tails(keep)
                self.extremes[key] = (low, high)
            lowest, highest = self.extremes[key]
            self.extremes[key] = (min(lowest, low), max(highest, high))
            self.tails[key].add(values, low, high)
        self.seen += batch_images

    def ranges(self, method: str) -> dict:
        """Each activation's range over the images seen by `method`: "minmax", or "percentile" (never wider than
        min-max's); both hold 0, as the converters' own calibration does (int8 must represent zero exactly)."""
        if method not in ("minmax", "percentile"):
            raise EdgetlError(f"calibration method {method!r}: unknown; one of minmax, percentile")
        ranges = {}
        for key, (lowest, highest) in self.extremes.items():
            low, high = min(lowest, 0.0), max(highest, 0.0)
            if method == "percentile":
                cut_low, cut_high = self.tails[key].cut(self._keep(self.per_image[key], self.seen))
                low, high = max(low, min(cut_low, 0.0)), min(high, max(cut_high, 0.0))
            ranges[key] = (low, high)
        return ranges

    def copy(self) -> ActivationStats:
        copied = type(self)(self.images, self.percentile)
        copied.seen, copied.extremes, copied.per_image = self.seen, dict(self.extremes), dict(self.per_image)
        for key, tail in self.tails.items():
            copied.tails[key] = _Tails(tail.keep)
            copied.tails[key].high, copied.tails[key].low = tail.high.copy(), tail.low.copy()
        return copied


class Measurement:
    """One float graph's activations over the calibration images, measured as far as asked and kept: the
    statistics of the first n images for every n asked, from one pass that goes on where it stopped. The int8
    ladder's rungs all take their ranges from it, whatever the method, sample size or bias correction of their
    own graph (bias correction moves an activation's mean by a few int8 steps at most, so its range hardly).
    `statistics(images)` starts the statistics for up to that many images (ActivationStats, or a converter's
    own: anything with add, ranges and copy)."""

    def __init__(
        self,
        open_activations: Callable[[], Callable[[np.ndarray], dict]],
        bytes_per_image: int,
        most_images: int,
        statistics: Callable[[int], ActivationStats],
        names: frozenset[str] = frozenset(),
        engines: int = 1,
    ) -> None:
        # Opens the float graph for one pass: a function from a batch of images to each activation's values. What
        # it opened goes when the pass ends: an engine that keeps every tensor of a batch is as large as the
        # model's activations, and the ladder converts between its passes.
        self.open_activations = open_activations
        self.names = names  # the activations it measures, where the caller must check another graph against them
        self.batch = images_per_batch(bytes_per_image)
        # An engine that runs on one core is opened up to `engines` times, each running the next batch in a thread
        # of its own, where their batches fit PARALLEL_BATCH_BYTES together. Each batch is as large as one engine's:
        # LiteRT's results move in their last bit with the batch size, and the ranges with them.
        held = max(1, self.batch * bytes_per_image)
        self.engines = max(1, min(engines, PARALLEL_BATCH_BYTES // held))
        self.most_images, self.statistics = most_images, statistics
        self.stats = statistics(most_images)
        self.seen = 0
        self.snapshots: dict[int, ActivationStats] = {}

    def over(self, sample) -> ActivationStats:
        """The statistics of the images of `sample` (an ImageSample: the first len(sample) calibration images)."""
        count = len(sample)
        if count not in self.snapshots:
            if count < self.seen:  # asked for fewer than measured: measure again from the first image
                self.stats, self.seen = self.statistics(max(self.most_images, count)), 0
            if self.seen < count:
                self._measure(sample)
                collect_garbage()  # an engine lives in reference cycles: it would stay until the collector runs
            self.snapshots[count] = self.stats.copy()
        return self.snapshots[count]

    def _measure(self, sample) -> None:
        """Fold in the images of `sample` from the first not yet seen: `engines` consecutive batches at a time,
        each run by an engine of its own in a thread of its own (LiteRT lets go of the interpreter while it runs),
        then folded in their order."""
        from concurrent.futures import ThreadPoolExecutor

        engines = [self.open_activations() for _ in range(self.engines)]
        batches = sample.batches(self.batch, start=self.seen)
        with ThreadPoolExecutor(len(engines)) as pool:
            while group := list(itertools.islice(batches, len(engines))):
                # A view of an engine's tensors stops it from running again until it is let go of (LiteRT).
                runs = list(pool.map(lambda engine, batch: engine(batch), engines, group))
                for batch in group:
                    self.stats.add(runs.pop(0), len(batch))
                    self.seen += len(batch)


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


def tflite_measurement(calibrated: bytes, most_images: int, percentile: float) -> Measurement:
    """A Measurement of every calibrated activation of `calibrated` (the converter's calibrate-only output), keyed
    by tensor name (which another conversion of the same model repeats)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.python import schema_py_generated as schema

    subgraph = schema.Model.GetRootAs(calibrated, 0).Subgraphs(0)
    ranged = _ranged_tensors(subgraph)
    if not ranged:
        raise EdgetlError("the calibrated TFLite model has no activation ranges to measure; please report this")
    names = {index: subgraph.Tensors(index).Name().decode() for index in ranged}
    calibrated = bytes(calibrated)

    def opened() -> Interpreter:
        return Interpreter(
            model_content=calibrated,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            experimental_preserve_all_tensors=True,
        )

    # Every tensor is kept for a whole batch (preserve_all_tensors): the batch is sized by all of them.
    per_image = sum(
        int(np.prod(detail["shape"][1:], dtype=np.int64)) * np.dtype(detail["dtype"]).itemsize
        for detail in opened().get_tensor_details()
        if len(detail["shape"]) > 0
    )

    def open_activations() -> Callable[[np.ndarray], dict]:
        interpreter = opened()
        input_index = interpreter.get_input_details()[0]["index"]

        def activations(batch: np.ndarray) -> dict[str, np.ndarray]:
            interpreter.resize_tensor_input(input_index, list(batch.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(input_index, batch)
            interpreter.invoke()
            # Views of the interpreter's own tensors, not copies (get_tensor) of all of them at once; LiteRT refuses
            # to run again while any is still referenced.
            return {names[index]: interpreter.tensor(index)() for index in ranged}

        return activations

    # LiteRT's interpreter runs on one core: one an engine, each running its own batch.
    statistics = functools.partial(ActivationStats, percentile=percentile)
    return Measurement(open_activations, per_image, most_images, statistics, engines=cores())


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
