"""The one-pass int8 sensitivity ranking (exporting/sensitivity.py): every weighted layer once, named as the
quantisers take float layers, and a layer int8 cannot represent ranked first."""

import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgetl.exporting.sensitivity import _LayerErrors
from tests.exporting.test_int8_ladder import WEIGHTED_LAYERS, inverted_residual_classifier

HOSTILE_LAYER = "block1_expand"


def _on_grid(values: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """`values` quantised to the int8 (or uint8) grid of scale/zero point and dequantised again."""
    info = np.iinfo(dtype)
    steps = np.clip(np.round(values / scale) + zero_point, info.min, info.max)
    return (steps - zero_point) * scale


def test_a_layer_scores_its_error_in_steps_of_its_output_beyond_the_rounding_to_them():
    """Rounding to the output's grid stays when a layer is kept in float (the next int8 layer quantises its input
    again), so an int8 output equal to the float output on that grid scores nothing; the rest counts in steps of
    the grid, whatever their size: one value in four a step off on a coarse grid ranks below every value a step
    off on a fine one."""
    float_output = np.array([0.04, 0.51, 1.02, 2.0])
    fine, coarse = (0.1, 0, np.dtype(np.uint8)), (1.0, 0, np.dtype(np.uint8))

    def raw(grid, off=(0, 0, 0, 0)) -> np.ndarray:  # the integers an int8 op writes (zero points are 0 here)
        return (np.round(float_output / grid[0]) + np.array(off)).astype(np.uint8)

    errors = _LayerErrors(["rounded", "a_step_off", "one_in_four_a_step_off"])
    errors.add("rounded", raw(fine), float_output, fine)
    errors.add("a_step_off", raw(fine, (1, 1, 1, 1)), float_output, fine)
    errors.add("one_in_four_a_step_off", raw(coarse, (0, 0, 1, 0)), float_output, coarse)
    assert errors.steps("rounded") == 0 and errors.steps("a_step_off") == pytest.approx(1)
    assert errors.steps("one_in_four_a_step_off") == pytest.approx(0.5)
    assert errors.ranked() == ["a_step_off", "one_in_four_a_step_off", "rounded"]


def test_a_layer_error_summed_a_part_at_a_time_is_the_error_of_the_whole_output(monkeypatch):
    """The error is summed in float64 a part of the output at a time (a whole float64 copy of an Xception's layer
    is 100 MB at once); it is the error of the whole output, raw int8 values dequantised part by part."""
    import edgetl.exporting.sensitivity as sensitivity

    rng = np.random.default_rng(4)
    float_output = rng.normal(0, 2, (2, 40, 30, 3)).astype(np.float32)  # 7,200 values
    scale, zero_point = 0.05, 100
    grid = (scale, zero_point, np.dtype(np.uint8))
    raw = np.clip(np.round(float_output / scale) + zero_point + rng.integers(-2, 3, float_output.shape), 0, 255)
    raw = raw.astype(np.uint8)
    on_grid = _on_grid(float_output.astype(np.float64), *grid)
    expected = np.sqrt(np.mean(((raw.astype(np.float64) - zero_point) * scale - on_grid) ** 2)) / scale
    spanned = np.sqrt(np.mean((on_grid - float_output.astype(np.float64)) ** 2)) / (np.ptp(float_output) / 255)

    monkeypatch.setattr(sensitivity, "ERROR_VALUES", 1000)  # 8 parts, the last one short
    errors = _LayerErrors(["int8", "int8 before requantising", "float"])
    errors.add("int8", raw, float_output, grid)  # raw integers, as TFLite's int8 ops write them
    # ONNX's: the int8 node's float output before its QuantizeLinear, put on the grid here
    before = (raw.astype(np.float64) - zero_point) * scale + rng.uniform(-0.4, 0.4, raw.shape) * scale
    errors.add("int8 before requantising", before.astype(np.float32), float_output, grid)
    errors.add("float", on_grid, float_output, None)  # no grid: a step is a 255th of the output's span
    assert expected > 1 and errors.values["int8"] == float_output.size
    assert errors.steps("int8") == pytest.approx(expected, rel=1e-12)
    assert errors.steps("int8 before requantising") == pytest.approx(expected, rel=1e-12)
    assert errors.steps("float") == pytest.approx(spanned, rel=1e-6)


def hostile_classifier():
    """inverted_residual_classifier with one int8-hostile layer: `HOSTILE_LAYER` has, in every output channel, a
    weight a thousand times the others on an input channel that is always zero. The float model never sees it,
    but it sets each channel's int8 scale, so every other weight of the layer rounds to zero."""
    model = inverted_residual_classifier()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()])
    stem_kernel, stem_bias = model.get_layer("stem").get_weights()
    stem_kernel[..., 0], stem_bias[0] = 0, -1  # ReLU6(-1): channel 0 of the stem is always zero
    model.get_layer("stem").set_weights([stem_kernel, stem_bias])
    project_kernel, project_bias = model.get_layer("block0_project").get_weights()
    project_kernel[..., 0], project_bias[0] = 0, 0  # and stays zero through the first residual add
    model.get_layer("block0_project").set_weights([project_kernel, project_bias])
    kernel, bias = model.get_layer(HOSTILE_LAYER).get_weights()
    kernel[:, :, 0, :] = 1000 * np.abs(kernel).max()
    model.get_layer(HOSTILE_LAYER).set_weights([kernel, bias])
    return model


@pytest.mark.slow
def test_both_rankings_put_the_hostile_layer_first_and_name_every_layer_as_the_quantisers_keep_it_float():
    import onnx

    from edgetl.exporting.onnx import (
        WEIGHTED_NODES,
        OnnxCalibration,
        _float_layer_name,
        convert_onnx,
        node_of,
        onnx_op_report,
    )
    from edgetl.exporting.sensitivity import rank_onnx_layers, rank_tflite_layers
    from edgetl.exporting.tflite import (
        WEIGHTED_OPS,
        _calibrated,
        _interpreter,
        _quantize,
        _weighted_op_outputs,
        names_layer,
        tflite_op_report,
    )

    model = hostile_classifier()
    pixels = np.random.default_rng(0).uniform(0, 255, (16, 24, 24, 3)).astype(np.float32)

    # TFLite: named as the float graph's op outputs, which `denylisted_nodes` takes
    calibrated = _calibrated(model, pixels)
    ranked = rank_tflite_layers(lambda: calibrated, pixels, "uint8", WEIGHTED_OPS)
    assert sorted(ranked) == sorted(_weighted_op_outputs(calibrated)) and len(set(ranked)) == WEIGHTED_LAYERS
    assert names_layer(ranked[0], HOSTILE_LAYER), ranked
    flatbuffer = _quantize(calibrated, "uint8", (ranked[0],))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "float1.tflite"
        path.write_bytes(flatbuffer)
        assert sum(tflite_op_report(path).float_ops.values()) == 1
    dtypes = {detail["name"]: np.dtype(detail["dtype"]) for detail in _interpreter(flatbuffer).get_tensor_details()}
    assert dtypes[ranked[0]] == np.float32  # the one float op is that layer

    # ONNX: named by `_float_layer_name` on the graph onnxruntime quantises (pre-processed: BatchNorm folded)
    with tempfile.TemporaryDirectory() as work:
        quantizer = OnnxCalibration(convert_onnx(model), pixels, Path(work))
        prepared = onnx.load(str(quantizer.prepared))
        ranked = rank_onnx_layers(quantizer.quantize("minmax"), quantizer.prepared, pixels)
        quantized = quantizer.quantize("minmax", (ranked[0],))
    initializers = {initializer.name for initializer in prepared.graph.initializer}
    names = [_float_layer_name(n, initializers) for n in prepared.graph.node if n.op_type in WEIGHTED_NODES and n.name]
    assert sorted(ranked) == sorted(names) and len(set(ranked)) == WEIGHTED_LAYERS
    assert names_layer(ranked[0], HOSTILE_LAYER), ranked
    assert onnx_op_report(quantized).float_ops["Conv"] == 1  # (its ReLU6 stays float beside it)
    (island,) = [node for node in quantized.graph.node if node.name == node_of(ranked[0])]
    float_weights = {i.name for i in quantized.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert island.input[1] in float_weights


def test_the_tflite_ranking_keeps_only_the_tensors_it_reads_and_scores_as_with_every_tensor_kept(monkeypatch):
    """The debug model's int8 outputs and float twins are made outputs of the graph, which the interpreter keeps
    to the end of a run, instead of keeping every tensor: each layer gets the same score."""
    import ai_edge_litert.interpreter as litert

    import edgetl.exporting.sensitivity as sensitivity
    from edgetl.exporting.tflite import WEIGHTED_OPS, _calibrated

    model = hostile_classifier()
    pixels = np.random.default_rng(0).uniform(0, 255, (16, 24, 24, 3)).astype(np.float32)
    calibrated = _calibrated(model, pixels)

    def scores() -> dict:
        scored: dict = {}
        add = _LayerErrors.add

        def recorded(errors, layer, int8_output, float_output, grid):
            scored.setdefault(layer, []).append((int8_output.copy(), float_output.copy()))
            add(errors, layer, int8_output, float_output, grid)

        with monkeypatch.context() as patch:
            patch.setattr(_LayerErrors, "add", recorded)
            sensitivity.rank_tflite_layers(lambda: calibrated, pixels, "uint8", WEIGHTED_OPS)
        return scored

    outputs = []
    with_outputs = sensitivity._with_outputs
    monkeypatch.setattr(
        sensitivity,
        "_with_outputs",
        lambda model, tensors, **kwargs: outputs.append((tensors, kwargs)) or with_outputs(model, tensors, **kwargs),
    )
    kept_as_outputs = scores()
    assert len(outputs) == 1 and len(outputs[0][0]) == 2 * len(kept_as_outputs) == 2 * WEIGHTED_LAYERS
    # The run drops the NumericVerify ops (what that leaves: the test below); the scores below come from the debug
    # model with them, every tensor kept.
    assert outputs[0][1] == {"without_op": "NumericVerify"}
    interpreter = litert.Interpreter
    monkeypatch.setattr(sensitivity, "_with_outputs", lambda model, tensors, **kwargs: model)
    monkeypatch.setattr(
        litert, "Interpreter", lambda **kwargs: interpreter(experimental_preserve_all_tensors=True, **kwargs)
    )
    every_tensor_kept = scores()
    assert kept_as_outputs.keys() == every_tensor_kept.keys()
    for layer, batches in kept_as_outputs.items():
        for (int8_output, float_output), (int8_kept, float_kept) in zip(batches, every_tensor_kept[layer], strict=True):
            np.testing.assert_array_equal(int8_output, int8_kept)
            np.testing.assert_array_equal(float_output, float_kept)


def test_the_tflite_debug_model_is_run_without_its_numeric_verify_ops():
    """Each NumericVerify op writes its pair's difference into a float tensor of its own, as large as the pair's
    output, which the ranking never reads: the model it runs has every other op and none of those."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.python.convert import mlir_quantize

    from edgetl.exporting.sensitivity import _with_outputs
    from edgetl.exporting.tflite import _calibrated

    pixels = np.random.default_rng(0).uniform(0, 255, (4, 24, 24, 3)).astype(np.float32)
    calibrated = _calibrated(hostile_classifier(), pixels)
    debug_model = mlir_quantize(
        calibrated, input_data_type=tf.uint8, output_data_type=tf.uint8, enable_numeric_verify=True
    )

    def ops(flatbuffer: bytes) -> list[str]:
        resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interpreter = Interpreter(model_content=flatbuffer, experimental_op_resolver_type=resolver)
        return [op["op_name"] for op in interpreter._get_ops_details()]

    before = ops(debug_model)
    after = ops(_with_outputs(debug_model, [], without_op="NumericVerify"))
    assert before.count("NumericVerify") >= WEIGHTED_LAYERS
    assert after == [name for name in before if name != "NumericVerify"]
