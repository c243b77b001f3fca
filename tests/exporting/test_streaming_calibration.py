"""Calibration streams: activation statistics are folded in batch by batch, each batch no larger than the memory
budget allows, so more calibration images than the budget holds still calibrate, in bounded memory, to the same
ranges the whole set at once would give (and the same int8 file onnxruntime's own calibrator makes)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgetl.exporting.activation_ranges import ActivationStats, images_per_batch
from edgetl.exporting.calibration import ImageSample
from tests.exporting.onnx_models import pixels, small_classifier

ROOT = Path(__file__).resolve().parents[2]


def test_statistics_merged_batch_by_batch_equal_those_of_all_values_at_once():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((60, 50)).astype(np.float32)
    images[7, 3], images[41, 9] = 40.0, -35.0  # rare extremes the percentile cuts off
    whole = ActivationStats(60, 99.0)
    whole.add({"t": images}, 60)
    merged = ActivationStats(60, 99.0)
    for batch in np.array_split(images, [1, 8, 9, 30]):  # uneven batches, one of a single image
        merged.add({"t": batch}, len(batch))
    for method in ("minmax", "percentile"):
        assert merged.ranges(method) == whole.ranges(method)
    assert merged.ranges("minmax")["t"] == (-35.0, 40.0)
    low, high = merged.ranges("percentile")["t"]
    ordered = np.sort(images.ravel())
    assert (low, high) == (float(ordered[30]), float(ordered[-31]))  # 1% of 3000 values = 30 cut off each side


def test_one_pass_gives_the_exact_statistics_of_every_first_n_images_asked():
    """The ladder asks for its first sample, then three times as many: the pass goes on where it stopped, and
    each answer equals a pass over just those images."""
    from edgetl.exporting.activation_ranges import Measurement

    rng = np.random.default_rng(1)
    images = rng.standard_normal((90, 4, 4, 3)).astype(np.float32) * rng.uniform(0.5, 3.0, (90, 1, 1, 1))
    runs = []

    def activations(batch: np.ndarray) -> dict[str, np.ndarray]:
        runs.append(len(batch))
        return {"x": batch, "relu": np.maximum(batch, 0) * 2}

    opened = []

    def open_activations():
        opened.append(len(runs))
        return activations

    measurement = Measurement(open_activations, images[0].nbytes * 2, 90, lambda count: ActivationStats(count, 99.0))
    for count in (30, 30, 90, 30):
        asked = measurement.over(ImageSample.of(images[:count]))
        alone = ActivationStats(count, 99.0)
        alone.add(activations(images[:count]), count)
        for method in ("minmax", "percentile"):
            assert asked.ranges(method) == alone.ranges(method), (count, method)
    assert sum(runs) == 90 + (30 + 30 + 90 + 30)  # the pass runs each of the 90 images once; the rest: "alone"
    assert len(opened) == 2  # the graph is opened for each pass that runs images (30, then 60 more), only then


def test_engines_that_run_on_one_core_measure_batches_side_by_side_to_the_same_statistics():
    """An engine that runs on one core (LiteRT's interpreter) is opened once a core: each runs its own batch, of
    the size one engine's would have, in a thread of its own, and every first n images give the statistics one
    engine gives. Engines whose batches would hold more than PARALLEL_BATCH_BYTES together run one at a time."""
    import threading

    from edgetl.exporting.activation_ranges import PARALLEL_BATCH_BYTES, Measurement

    rng = np.random.default_rng(5)
    images = rng.standard_normal((50, 4, 4, 3)).astype(np.float32) * rng.uniform(0.5, 3.0, (50, 1, 1, 1))
    threads, batches = set(), []

    def open_activations():
        def activations(batch: np.ndarray) -> dict[str, np.ndarray]:
            threads.add(threading.get_ident())
            batches.append(len(batch))
            return {"x": batch, "relu": np.maximum(batch, 0) * 2}

        return activations

    def measured(engines: int, bytes_per_image: int):
        measurement = Measurement(
            open_activations, bytes_per_image, 50, lambda count: ActivationStats(count, 99.0), engines=engines
        )
        return measurement, [
            measurement.over(ImageSample.of(images[:count])).ranges("percentile") for count in (17, 50)
        ]

    per_image = 8 * 2**20  # 8 images a batch (64 MB)
    alone, alone_ranges = measured(1, per_image)
    threads.clear(), batches.clear()
    side_by_side, ranges = measured(2, per_image)
    assert (side_by_side.engines, side_by_side.batch) == (2, alone.batch)
    assert ranges == alone_ranges
    assert len(threads) == 2 and sorted(batches) == sorted([8, 8, 1, 8, 8, 8, 8, 1])  # 17 = 8+8+1, then 33 more
    large, _ = measured(2, PARALLEL_BATCH_BYTES // 2 + 1)  # one image a batch, more than half the budget
    assert large.engines == 1


def test_ranges_hold_zero_and_the_percentile_is_never_wider_than_min_max():
    stats = ActivationStats(10, 90.0)
    stats.add({"positive": np.linspace(2.0, 5.0, 100, dtype=np.float32)}, 10)
    assert stats.ranges("minmax")["positive"] == (0.0, 5.0)
    low, high = stats.ranges("percentile")["positive"]
    assert low == 0.0 and 2.0 < high < 5.0


def test_a_batch_holds_what_the_budget_allows_and_at_least_one_image():
    assert images_per_batch(10 * 2**20, budget=64 * 2**20) == 6
    assert images_per_batch(512 * 2**20, budget=64 * 2**20) == 1
    assert images_per_batch(1, budget=64 * 2**20) >= 1


def test_an_image_sample_reads_only_the_slices_asked_for():
    reads = []

    def read(start: int, stop: int) -> np.ndarray:
        reads.append((start, stop))
        return np.full((stop - start, 2, 2, 3), start, np.float32)

    sample = ImageSample(read, 10)
    assert [len(batch) for batch in sample.batches(4)] == [4, 4, 2]
    assert [len(batch) for batch in sample.batches(4, start=7)] == [3]
    assert sample[:3].shape == (3, 2, 2, 3) and len(list(sample)) == 10
    assert reads[:4] == [(0, 4), (4, 8), (8, 10), (7, 10)]
    with pytest.raises(TypeError):
        sample[::2]


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_onnx_calibration_gives_the_int8_file_onnxruntimes_own_calibrator_gives(tmp_path, method):
    """The ranges edgetl measures, handed to onnxruntime through its calibration cache, make the file onnxruntime's
    own calibrator of the method makes reading the images one by one (32 images: one batch, so the percentile
    histogram is binned as onnxruntime bins it)."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from edgetl.exporting.int8 import CALIBRATION_PERCENTILE
    from edgetl.exporting.onnx import OnnxCalibration
    from edgetl.models.classifier import INPUT_NAME

    images = pixels(32)
    ours = OnnxCalibration(small_classifier(), images, tmp_path).quantize(method, (), "vnni-arm64")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.images = iter(images)

        def get_next(self):
            image = next(self.images, None)
            return None if image is None else {INPUT_NAME: image[np.newaxis]}

    theirs_path = tmp_path / "theirs.onnx"
    quantize_static(
        str(tmp_path / "prepared.onnx"), str(theirs_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method],
        extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
    )  # fmt: skip
    theirs = onnx.load(str(theirs_path))

    def scales(model) -> dict[str, float]:
        return {
            init.name: float(onnx.numpy_helper.to_array(init).ravel()[0])
            for init in model.graph.initializer
            if init.name.endswith("_scale")
        }

    outputs = [
        onnxruntime.InferenceSession(model.SerializeToString()).run(None, {INPUT_NAME: images})[0]
        for model in (ours, theirs)
    ]
    assert scales(ours) == pytest.approx(scales(theirs), rel=1e-6)
    np.testing.assert_array_equal(*outputs)


MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import edgetl.exporting.activation_ranges as activation_ranges
    from edgetl.exporting.calibration import ImageSample
    from edgetl.exporting.onnx import activation_bytes_per_image, onnx_measurement
    from tests.exporting.onnx_models import SIZE, small_classifier
    import onnx

    count, budget = int(sys.argv[1]), int(sys.argv[2])
    activation_ranges.ACTIVATION_BATCH_BYTES = budget
    model = onnx.shape_inference.infer_shapes(small_classifier())
    batches = []

    def read(start, stop):  # images made on demand, never all held: only the calibration can grow the memory
        batches.append(stop - start)
        rng = np.random.default_rng(start)
        return rng.uniform(0, 255, (stop - start, SIZE, SIZE, 3)).astype(np.float32)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = onnx_measurement(model, count).over(ImageSample(read, count))
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({
        "grown_bytes": grown * 1024, "largest_batch": max(batches), "images": sum(batches),
        "per_image": activation_bytes_per_image(model), "tensors": len(stats.ranges("percentile")),
        "ranges": {k: list(v) for k, v in stats.ranges("minmax").items()},
    }))
    """
)


def in_a_fresh_process(script: str, *args, hash_seed: int | None = None) -> dict:
    """What `script` prints last (JSON), run with `args` in a Python of its own (with `hash_seed` for its string
    hashes, else a random one)."""
    env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin"}
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = str(hash_seed)
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, env=env, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_in_a_fresh_process(count: int, budget: int) -> dict:
    return in_a_fresh_process(MEASURE, count, budget)


def test_more_calibration_images_than_the_memory_budget_holds_still_calibrate_in_bounded_memory():
    budget = 1 * 2**20
    measured = measure_in_a_fresh_process(10_000, budget)
    all_activations = measured["images"] * measured["per_image"]
    assert measured["images"] == 10_000 and all_activations > 200 * budget  # the set is far larger than the budget
    assert measured["largest_batch"] * measured["per_image"] <= budget  # every batch fits it
    # What is held besides a batch does not grow with the images: the process grows by far less than the
    # activations of the whole set (which a calibrator holding them all would need), and about as much as for a
    # tenth of the images.
    small = measure_in_a_fresh_process(1_000, budget)
    assert measured["grown_bytes"] < all_activations / 10
    assert measured["grown_bytes"] < small["grown_bytes"] + 32 * 2**20
    assert measured["tensors"] == small["tensors"] > 4


CONVERT_TFLITE = textwrap.dedent(
    """
    import ctypes, gc, json, sys
    from pathlib import Path

    def resident():
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) * 1024

    import keras
    from tensorflow.lite.python import lite
    from edgetl.exporting import tflite

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    features = keras.layers.Flatten()(keras.layers.Conv2D(8, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1200, activation="softmax")(features))  # 35 MB of weights
    weights = sum(weight.nbytes for weight in model.get_weights())
    loads = []
    load = lite._load
    counting = lite._load = lambda *args, **kwargs: loads.append(args) or load(*args, **kwargs)
    before = resident()
    if sys.argv[1] == "edgetl":
        converted = tflite.convert_float32(model)
    else:
        converted = tflite._converter(model).convert()
    grown = resident() - before
    Path(sys.argv[2]).write_bytes(converted)
    print(json.dumps({"weights": weights, "grown": grown, "loads": len(loads), "patched": lite._load is not counting}))
    """
)


@pytest.mark.slow
def test_the_tflite_converter_no_longer_loads_its_savedmodel_back(tmp_path):
    """The converter loads the SavedModel it makes of a Keras model back into Python, only to read its debug
    info; much of that outlives the conversion. edgetl's conversion reads the debug info alone and makes the same
    file, and the process keeps less (each way in a fresh process: the first conversion sets up a lot)."""

    plain, ours = (in_a_fresh_process(CONVERT_TFLITE, how, tmp_path / f"{how}.tflite") for how in ("plain", "edgetl"))
    assert (plain["loads"], ours["loads"]) == (1, 0)
    assert not ours["patched"]  # put back after the conversion
    assert (tmp_path / "plain.tflite").read_bytes() == (tmp_path / "edgetl.tflite").read_bytes()
    assert ours["weights"] > 30e6
    assert ours["grown"] < plain["grown"] - ours["weights"]


CONVERT_ONNX = textwrap.dedent(
    """
    import hashlib, json
    import keras
    from edgetl.exporting.onnx import convert_onnx

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for _ in range(8):  # eight ReLU6 read one 0 and one 6, which tf2onnx names after one of them
        x = keras.layers.ReLU(6.0)(keras.layers.Conv2D(4, 3, padding="same")(x))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    print(json.dumps({"sha256": hashlib.sha256(convert_onnx(model).SerializeToString()).hexdigest()}))
    """
)


@pytest.mark.slow
def test_a_model_converts_to_the_same_onnx_bytes_in_any_process():
    """Which of the nodes sharing a constant tf2onnx names it after changes with the process's string hashes;
    edgetl names it after the first node that reads it."""
    digests = {in_a_fresh_process(CONVERT_ONNX, hash_seed=seed)["sha256"] for seed in range(4)}
    assert len(digests) == 1


@pytest.mark.slow
def test_a_model_converted_twice_has_the_same_node_and_tensor_names():
    """tf2onnx numbers what it makes from a process-wide counter; edgetl numbers it by place, so every rung's
    conversion names its activations as the first did, and the ranges measured on the first are found."""
    import keras

    from edgetl.exporting.onnx import convert_onnx

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))

    def names(model_proto) -> list[str]:
        graph = model_proto.graph
        return [n.name for n in graph.node] + [t for n in graph.node for t in (*n.input, *n.output)]

    first, second = convert_onnx(model), convert_onnx(model)
    assert any("__" in name for name in names(first))  # tf2onnx made some
    assert names(first) == names(second)
    # The initializers' order, which changes from process to process, is the order the graph first reads them in.
    import onnx

    from edgetl.exporting.onnx import _number_made_nodes

    shuffled = onnx.ModelProto()
    shuffled.CopyFrom(first)
    assert len(shuffled.graph.initializer) > 2
    shuffled.graph.initializer.sort(key=lambda initializer: initializer.name, reverse=True)
    assert shuffled.SerializeToString() != first.SerializeToString()
    _number_made_nodes(shuffled)
    assert shuffled.SerializeToString() == first.SerializeToString()
    assert first.SerializeToString() == second.SerializeToString()


@pytest.mark.slow
def test_tf2onnx_converts_without_copying_its_graph_and_falls_back_when_an_optimiser_fails(monkeypatch):
    """tf2onnx deep-copies its graph before every optimiser by default (4.4 GB and 31 s for an Xception at
    299 px); edgetl converts without those copies, to the same graph, and converts again the default way when an
    optimiser fails, which tf2onnx then skips."""
    import contextlib
    import copy

    import keras
    import tf2onnx.optimizer
    from tf2onnx.graph import Graph

    import edgetl.exporting.onnx as onnx_module

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(keras.layers.DepthwiseConv2D(3)(x))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x)))
    copied = []
    deepcopy = copy.deepcopy

    def counting_deepcopy(value, *args):
        if isinstance(value, Graph):
            copied.append(value)
        return deepcopy(value, *args)

    monkeypatch.setattr(tf2onnx.optimizer.copy, "deepcopy", counting_deepcopy)
    fast = onnx_module.convert_onnx(model)
    assert copied == []

    catching = onnx_module._tf2onnx_catching_errors
    with monkeypatch.context() as patch:
        patch.setattr(onnx_module, "_tf2onnx_catching_errors", lambda catch: catching(True))
        default = onnx_module.convert_onnx(model)
    assert len(copied) >= len(tf2onnx.optimizer._optimizers)
    assert fast.SerializeToString() == default.SerializeToString()
    for lighter in ("_tf2onnx_nodes_released", "_tf2onnx_frozen_graph_only"):
        with monkeypatch.context() as patch:  # nor does a fresh NodeProto a node, or letting the frozen function go
            patch.setattr(onnx_module, lighter, contextlib.nullcontext)
            assert onnx_module.convert_onnx(model).SerializeToString() == default.SerializeToString(), lighter

    class Failing:
        graph_been_opt = False

        def optimize(self, graph, iteration):
            raise RuntimeError("an optimiser that fails")

    copied.clear()
    monkeypatch.setitem(tf2onnx.optimizer._optimizers, "failing", Failing)
    assert onnx_module.convert_onnx(model).SerializeToString() == default.SerializeToString()
    assert copied  # the second, default conversion
    assert "TF2ONNX_CATCH_ERRORS" not in onnx_module.os.environ


@pytest.mark.slow
def test_tf2onnx_no_longer_piles_up_a_copy_of_each_constant_at_every_optimiser():
    """tf2onnx writes each node's attributes into its NodeProto after every optimiser; the message keeps what it
    held until it goes, so without a fresh NodeProto each constant's tensor piles up once per optimiser."""
    from onnx import helper, numpy_helper
    from tf2onnx.graph import Graph

    from edgetl.exporting.onnx import _tf2onnx_nodes_released

    def resident() -> int:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) * 1024

    size = 40_000_000
    value = numpy_helper.from_array(np.ones(size // 4, np.float32), "w")
    graph = Graph([helper.make_node("Constant", [], ["w"], "w", value=value)], output_shapes={}, dtypes={}, opset=17)
    constant = graph.get_node_by_name("w")
    before = resident()
    for _ in range(8):
        constant.update_proto()
    assert resident() - before > 6 * size  # tf2onnx as it is: a copy an update
    before = resident()
    with _tf2onnx_nodes_released():
        for _ in range(8):
            constant.update_proto()
    assert resident() - before < 3 * size
    assert list(constant.op.attribute[0].t.dims) == [size // 4]


def test_onnx_percentile_from_batches_is_onnxruntimes_cut_of_all_the_values_at_once():
    """Streamed in batches of any size, the percentile ranges equal onnxruntime's HistogramCollector's (symmetric,
    2048 bins) over all the values in one call, as its percentile calibrator computes them, for activations of
    one sign, of both, and one that turns to both signs only in a later batch."""
    import contextlib
    import io

    from onnxruntime.quantization.calibrate import HistogramCollector

    from edgetl.exporting.int8 import CALIBRATION_PERCENTILE
    from edgetl.exporting.onnx import ONNX_HISTOGRAM_BINS, _OnnxStatistics

    rng = np.random.default_rng(5)
    values = {
        "relu": np.maximum(rng.normal(0.5, 1.0, (40, 6, 6, 4)), 0).astype(np.float32),
        "linear": (rng.standard_t(3, (40, 6, 6, 4)) * 2 + 0.3).astype(np.float32),
        "late": np.concatenate([rng.uniform(0.2, 3, (30, 6, 6, 4)), rng.uniform(-5, 3, (10, 6, 6, 4))]).astype(
            np.float32
        ),
        "negative": -rng.exponential(1.0, (40, 3)).astype(np.float32) - 0.1,
    }
    collector = HistogramCollector(
        method="percentile", symmetric=True, num_bins=ONNX_HISTOGRAM_BINS, num_quantized_bins=128,
        percentile=CALIBRATION_PERCENTILE, scenario="same",
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        collector.collect(values)
        theirs = {name: (float(cut[0]), float(cut[1])) for name, cut in collector.compute_collection_result().items()}
    for batch in (1, 7, 40):
        stats = _OnnxStatistics(40, CALIBRATION_PERCENTILE)
        for start in range(0, 40, batch):
            part = {name: value[start : start + batch] for name, value in values.items()}
            stats.add(part, len(part["relu"]))
        ours = stats.ranges("percentile")
        assert ours.keys() == theirs.keys()
        for name in theirs:
            assert ours[name] == pytest.approx(theirs[name], rel=1e-6), (batch, name)
        assert theirs["linear"][1] < values["linear"].max()  # the cut clips something


def test_a_graph_naming_its_activations_otherwise_is_measured_itself(tmp_path):
    """The ladder's rungs share one measurement because conversions of one model name their activations alike;
    where tf2onnx named one otherwise (it names a fused node after one of its parts), that graph is measured
    itself instead of failing in onnxruntime for a missing range, and its file is the one measured alone."""
    from edgetl.exporting.onnx import OnnxCalibration

    for folder in ("first", "shared", "alone"):
        (tmp_path / folder).mkdir()
    model = small_classifier()
    images = pixels(12)
    first = OnnxCalibration(model, images, tmp_path / "first")
    renamed = type(model)()
    renamed.CopyFrom(model)
    old, new = "stem", "named_otherwise:0"  # the first convolution's output
    for each in renamed.graph.node:
        each.input[:] = [new if name == old else name for name in each.input]
        each.output[:] = [new if name == old else name for name in each.output]
    shared = OnnxCalibration(renamed, images, tmp_path / "shared", (first.measurement,))
    alone = OnnxCalibration(renamed, images, tmp_path / "alone")
    assert shared.measurement is not first.measurement and "named_otherwise:0" in shared.measurement.names
    for method in ("minmax", "percentile"):
        assert shared.quantize(method).SerializeToString() == alone.quantize(method).SerializeToString()
    # Given both measurements, each graph takes the one that measured its own names, and measures nothing.
    for folder, graph, expected in (("again", renamed, shared), ("plain", model, first)):
        (tmp_path / folder).mkdir()
        again = OnnxCalibration(graph, images, tmp_path / folder, (shared.measurement, first.measurement))
        assert again.measurement is expected.measurement


def test_the_ladder_keeps_a_measurement_for_each_way_its_graphs_name_their_activations():
    """Rungs share the latest measurement that fits their graph; a graph that needed its own adds it, and the
    two kinds of graph (plain and bias-corrected) no longer measure again in turn."""
    from types import SimpleNamespace

    from edgetl.exporting.formats import KEPT_MEASUREMENTS, ConversionInputs, ExportOptions
    from edgetl.exporting.int8 import Int8Recipe

    class Calibration:
        def __init__(self, measurements: tuple, names: str) -> None:
            self.given = measurements
            fitting = [measured for measured in measurements if measured == names]
            self.measurement = fitting[0] if fitting else names  # a "measurement" is its graph's names here

    inputs = ConversionInputs(ExportOptions(), SimpleNamespace(available=600))
    given = []
    for rung, names in enumerate(["corrected", "plain", "corrected", "plain", "third"]):
        rung_inputs = ConversionInputs(inputs.options, inputs.calibration, inputs.cache, Int8Recipe(200 + rung, "m"))
        calibration = rung_inputs.calibrated("onnx", lambda measured, most, names=names: Calibration(measured, names))
        given.append(calibration.given)
    assert given == [(), ("corrected",), ("plain", "corrected"), ("plain", "corrected"), ("plain", "corrected")]
    assert inputs.cache["onnx", "measurements"] == ["third", "plain"][:KEPT_MEASUREMENTS]


def test_every_quantisation_of_one_graph_after_the_first_reuses_its_weights_and_makes_the_same_file(
    tmp_path, monkeypatch
):
    """The ladder and the ranking quantise one graph again and again (other ranges, other layers in float, another
    target): the weights' quantisation is computed once, and each file equals the one a calibration that never
    quantised before makes (onnxruntime computing everything)."""
    from onnx import numpy_helper
    from onnxruntime.quantization import qdq_quantizer

    from edgetl.exporting.onnx import OnnxCalibration

    computed = []
    compute = qdq_quantizer.compute_data_quant_params
    monkeypatch.setattr(
        qdq_quantizer, "compute_data_quant_params", lambda *a, **k: computed.append(1) or compute(*a, **k)
    )
    model, images = small_classifier(), pixels(12)
    # Weights so small that onnxruntime widens their scales for the int32 bias, by each quantisation's own ranges.
    weights = next(initializer for initializer in model.graph.initializer if initializer.name == "pw_w")
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * np.float32(1e-8), "pw_w"))
    (tmp_path / "again").mkdir()
    again = OnnxCalibration(model, images, tmp_path / "again")
    quantisations = [
        ("minmax", (), "vnni-arm64"),
        ("percentile", ("dw;dw_w;dw_b",), "vnni-arm64"),
        ("minmax", ("pw;pw_w;pw_b", "stem;stem_w;stem_b"), "vnni-arm64"),
        ("percentile", (), "portable"),
        ("minmax", ("fc;fc_w;fc_b",), "portable"),
    ]
    files = set()
    for number, (method, float_layers, target) in enumerate(quantisations):
        computed.clear()
        made = again.quantize(method, float_layers, target).SerializeToString()
        files.add(made)
        first_of_target = target not in [earlier for _, _, earlier in quantisations[:number]]
        assert bool(computed) == first_of_target, (method, float_layers, target)
        (tmp_path / f"alone{number}").mkdir()
        alone = OnnxCalibration(model, images, tmp_path / f"alone{number}")
        assert made == alone.quantize(method, float_layers, target).SerializeToString(), (method, float_layers)
    assert len(files) == len(quantisations)  # each a file of its own: the float layers are found


def test_calibrations_of_graphs_with_the_same_weights_share_their_quantisation_and_make_the_same_files(
    tmp_path, monkeypatch
):
    """The ladder's rungs are graphs of one model that differ in their biases (bias correction, float islands left
    out of it): given one dict, a later calibration computes no weight quantisation of its own, and makes the file
    a calibration that shares nothing makes. A weight whose values differ under the same name is computed anew."""
    from onnx import numpy_helper
    from onnxruntime.quantization import qdq_quantizer

    from edgetl.exporting.onnx import OnnxCalibration

    computed = []  # weights whose parameters or quantised values onnxruntime computed
    compute, quantize = qdq_quantizer.compute_data_quant_params, qdq_quantizer.quantize_onnx_initializer
    monkeypatch.setattr(
        qdq_quantizer, "compute_data_quant_params", lambda *a, **k: computed.append(1) or compute(*a, **k)
    )
    monkeypatch.setattr(
        qdq_quantizer, "quantize_onnx_initializer", lambda w, *a, **k: computed.append(w.name) or quantize(w, *a, **k)
    )
    images = pixels(12)

    def graph(bias_shift: float = 0.0, weight_scale: float = 1.0):
        model = small_classifier()
        for initializer in model.graph.initializer:
            change = {"pw_b": (bias_shift, 1.0), "pw_w": (0.0, weight_scale)}.get(initializer.name)
            if change is not None:
                values = numpy_helper.to_array(initializer) * np.float32(change[1]) + np.float32(change[0])
                initializer.CopyFrom(numpy_helper.from_array(values, initializer.name))
        return model

    shared: dict = {}
    for number, (shift, scale, computes) in enumerate([(0.0, 1.0, True), (0.3, 1.0, False), (0.0, 0.5, True)]):
        for target in ("portable", "vnni-arm64"):
            computed.clear()
            (tmp_path / f"shared{number}{target}").mkdir()
            calibration = OnnxCalibration(
                graph(shift, scale), images, tmp_path / f"shared{number}{target}", weight_quantisations=shared
            )
            made = calibration.quantize("minmax", ("fc;fc_w;fc_b",) if number else (), target).SerializeToString()
            assert bool(computed) == computes, (number, target)
            if number == 2:  # only the weight that changed
                assert {name for name in computed if isinstance(name, str)} == {"pw_w"}
            (tmp_path / f"alone{number}{target}").mkdir()
            alone = OnnxCalibration(graph(shift, scale), images, tmp_path / f"alone{number}{target}")
            expected = alone.quantize("minmax", ("fc;fc_w;fc_b",) if number else (), target).SerializeToString()
            assert made == expected, (number, target)


def test_the_quantisers_shortcuts_make_the_files_it_makes_without_them_and_leave_it_as_it_was(tmp_path, monkeypatch):
    """onnxruntime's quantiser with edgetl's shortcuts (initializers checked once, readers found by membership,
    first match by name): the same files, for both targets, with and without a float island, the first graph
    again; and onnxruntime's own functions back afterwards."""
    import contextlib

    from onnxruntime.quantization import base_quantizer, quant_utils
    from onnxruntime.quantization.onnx_model import ONNXModel

    from edgetl.exporting import onnx as edgetl_onnx

    before = (
        ONNXModel.initializer_extend,
        ONNXModel.replace_input_of_all_nodes,
        quant_utils.find_by_name,
        base_quantizer.find_by_name,
    )
    images = pixels(12)
    made = {}
    for shortcuts in (True, False):
        if not shortcuts:
            monkeypatch.setattr(edgetl_onnx, "_quantiser_shortcuts", contextlib.nullcontext)
        work = tmp_path / str(shortcuts)
        work.mkdir()
        calibration = edgetl_onnx.OnnxCalibration(small_classifier(), images, work)
        made[shortcuts] = [
            calibration.quantize("minmax", layers, target).SerializeToString()
            for target in ("portable", "vnni-arm64")
            for layers in ((), ("pw;pw_w;pw_b",), ("fc;fc_w;fc_b",), ())
        ]
    assert made[True] == made[False]
    assert len(set(made[True])) == 6  # two targets, three graphs each (the last is the first again)
    after = (
        ONNXModel.initializer_extend,
        ONNXModel.replace_input_of_all_nodes,
        quant_utils.find_by_name,
        base_quantizer.find_by_name,
    )
    assert after == before


def test_a_quantised_graph_is_sorted_by_depth_keeping_its_order_within_a_depth():
    """Every node after the nodes it reads from, and among nodes of one depth the graph's own order: what a sort
    in rounds (all nodes whose inputs are there, in order, then again) gives; a cycle or a missing input is an
    error."""
    import random

    import onnx
    from onnx import TensorProto, helper

    from edgetl.exporting.onnx import _set_nodes, _sort_topologically

    def rounds(graph) -> list[str]:
        available = {i.name for i in graph.input} | {init.name for init in graph.initializer} | {""}
        pending, ordered = list(graph.node), []
        while pending:
            ready = [node for node in pending if all(name in available for name in node.input)]
            ordered += [node.name for node in ready]
            available.update(output for node in ready for output in node.output)
            pending = [node for node in pending if node.name not in ordered]
        return ordered

    model = small_classifier()
    nodes = list(model.graph.node)
    for seed in range(5):
        random.Random(seed).shuffle(nodes)
        _set_nodes(model.graph, nodes)
        expected = rounds(model.graph)
        _sort_topologically(model.graph)
        assert [node.name for node in model.graph.node] == expected
    looped = onnx.ModelProto()
    looped.graph.input.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]))
    looped.graph.node.extend(
        [helper.make_node("Add", ["x", "b"], ["a"], "first"), helper.make_node("Relu", ["a"], ["b"], "second")]
    )
    with pytest.raises(ValueError, match="cycle"):
        _sort_topologically(looped.graph)
    looped.graph.node[1].input[0] = "nowhere"
    with pytest.raises(ValueError, match="nothing produces"):
        _sort_topologically(looped.graph)
