"""Bias correction: the mean output shift int8 weight rounding causes is measured and taken out of the bias."""

import numpy as np
import pytest

from edgetl.exporting.bias_correction import bias_corrected
from edgetl.exporting.int8 import INT8_WEIGHT_MAX as INT8_MAX

pytestmark = pytest.mark.slow


def conv_bn_model(depthwise_bias: bool = True):
    """conv -> BatchNorm -> depthwise (with a bias of its own, random unless not `depthwise_bias`: zero, as
    initialised) -> pooling."""
    import keras

    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(6, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)  # no BatchNorm: its own bias is corrected
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    model.get_layer("conv").set_weights([rng.normal(0, 3, (3, 3, 3, 6)).astype(np.float32)])
    gamma, beta, mean, variance = (rng.uniform(0.5, 2, 6).astype(np.float32) for _ in range(4))
    model.get_layer("conv_bn").set_weights([gamma, beta, mean, variance])
    if depthwise_bias:
        kernel, bias = model.get_layer("depthwise").get_weights()
        model.get_layer("depthwise").set_weights([kernel, rng.normal(0, 1, bias.shape).astype(np.float32)])
    return model


def int8_rounded(model):
    """The model's float output with every convolution's (BatchNorm-folded) kernel rounded as int8 per channel."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    bn = clone.get_layer("conv_bn")
    gamma, beta, mean, variance = bn.get_weights()
    scale = gamma / np.sqrt(variance + bn.epsilon)
    (kernel,) = clone.get_layer("conv").get_weights()
    folded = kernel * scale
    step = np.abs(folded).max(axis=(0, 1, 2), keepdims=True) / INT8_MAX
    clone.get_layer("conv").set_weights([np.round(folded / step) * step / scale])
    depthwise, bias = clone.get_layer("depthwise").get_weights()
    step = np.abs(depthwise).max(axis=(0, 1), keepdims=True) / INT8_MAX
    clone.get_layer("depthwise").set_weights([np.round(depthwise / step) * step, bias])
    return clone


def test_correction_removes_the_mean_shift_and_is_undone_afterwards():
    model = conv_bn_model()
    pixels = np.random.default_rng(1).uniform(100, 140, (32, 12, 12, 3)).astype(np.float32)  # near-constant input
    before = [w.copy() for w in model.get_weights()]
    reference = model.predict(pixels, verbose=0).mean(axis=0)
    shift = np.abs(int8_rounded(model).predict(pixels, verbose=0).mean(axis=0) - reference).max()
    with bias_corrected(model, pixels) as corrected:
        assert len(corrected) == 2
        residual = np.abs(int8_rounded(model).predict(pixels, verbose=0).mean(axis=0) - reference).max()
    assert shift > 0.01 and residual < shift / 20
    for restored, original in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(restored, original)


def test_layers_kept_in_float_are_not_corrected():
    model = conv_bn_model()
    pixels = np.random.default_rng(1).uniform(0, 255, (8, 12, 12, 3)).astype(np.float32)
    beta = model.get_layer("conv_bn").get_weights()[1]
    with bias_corrected(model, pixels, keep_float=lambda name: name == "conv") as corrected:
        assert len(corrected) == 1
        np.testing.assert_array_equal(model.get_layer("conv_bn").get_weights()[1], beta)


def test_a_tflite_graph_rebiased_is_the_converters_graph_of_the_corrected_model():
    """Written into the folded biases, one conversion serves every rung's bias correction: the graph equals the
    converter's own conversion of the corrected model, and corrections taken back give the uncorrected graph."""
    from edgetl.exporting.tflite import TfliteCalibration, _predict

    model = conv_bn_model()
    pixels = np.random.default_rng(1).uniform(100, 140, (32, 12, 12, 3)).astype(np.float32)
    plain = TfliteCalibration(model, pixels)
    with bias_corrected(model, pixels) as corrections:
        converted = TfliteCalibration(model, pixels, corrections=corrections)
    assert len(corrections) == 2 and all(np.abs(c.shift).max() > 0 for c in corrections.values())
    rebiased = plain.rebiased(corrections, pixels)
    assert rebiased is not None and rebiased.float_model != plain.float_model
    # Equal to float32 rounding: the outputs reach thousands, where one step of float32 is 2e-4; the uncorrected
    # graph differs by several units.
    same = {"rtol": 1e-6, "atol": 1e-5}
    np.testing.assert_allclose(_predict(rebiased.float_model, pixels), _predict(converted.float_model, pixels), **same)
    assert not np.allclose(_predict(plain.float_model, pixels), _predict(converted.float_model, pixels), **same)
    back = converted.rebiased({}, pixels)
    np.testing.assert_allclose(_predict(back.float_model, pixels), _predict(plain.float_model, pixels), **same)
    # A correction whose convolution the graph does not name cannot be written: the model is converted instead.
    stranger = {"elsewhere": next(iter(corrections.values()))}
    assert plain.rebiased(stranger, pixels) is None


def twin_conv_model():
    """Two convolutions, each before a BatchNormalization, named as Keras names the second layer of a kind (conv,
    conv_1); random BatchNorm statistics, so each folded bias differs."""
    import keras

    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv_1")(x)
    x = keras.layers.BatchNormalization(name="bn_1")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    rng = np.random.default_rng(4)
    for name in ("bn", "bn_1"):
        model.get_layer(name).set_weights([rng.uniform(0.5, 2, 4).astype(np.float32) for _ in range(4)])
    return model


def test_a_tflite_graph_rebiased_tells_convolutions_apart_by_their_biases_where_names_repeat():
    """Traced, layer conv's ops are named conv_1 too (each layer's scope gets a suffix), so names alone cannot tell
    which op is layer conv_1's: the bias each op holds does, and the graph equals the converter's of the corrected
    model, and back."""
    from edgetl.exporting.tflite import TfliteCalibration, _predict, _rebias

    model = twin_conv_model()
    pixels = np.random.default_rng(1).uniform(100, 140, (32, 12, 12, 3)).astype(np.float32)
    plain = TfliteCalibration(model, pixels)
    with bias_corrected(model, pixels) as corrections:
        converted = TfliteCalibration(model, pixels, corrections=corrections)
    assert sorted(corrections) == ["conv", "conv_1"]
    assert _rebias(plain.float_model, {}, corrections) is None  # by names alone
    rebiased = plain.rebiased(corrections, pixels)
    assert rebiased is not None
    same = {"rtol": 1e-6, "atol": 1e-5}
    np.testing.assert_allclose(_predict(rebiased.float_model, pixels), _predict(converted.float_model, pixels), **same)
    assert not np.allclose(_predict(plain.float_model, pixels), _predict(converted.float_model, pixels), **same)
    back = rebiased.rebiased({}, pixels)  # found by the values the first rebiasing moved them to
    assert back is not None
    np.testing.assert_allclose(_predict(back.float_model, pixels), _predict(plain.float_model, pixels), **same)


def initializers(model_proto) -> dict:
    """An ONNX graph's initializers as arrays, by name."""
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in model_proto.graph.initializer}


def test_input_sums_are_each_convolutions_inputs_summed_and_a_larger_sample_continues_the_smaller():
    """The sums come from one compiled graph a batch at a time, traced once: they equal the inputs Keras computes,
    summed over every image, whatever the batch size, and a larger sample adds only its further images to a
    smaller one's."""
    import keras

    from edgetl.exporting.bias_correction import InputSums

    model = conv_bn_model()
    pixels = np.random.default_rng(2).uniform(0, 255, (13, 12, 12, 3)).astype(np.float32)
    bn_output = keras.Model(model.inputs, model.get_layer("conv_bn").output).predict(pixels, verbose=0)
    expected = {"conv": pixels.sum(axis=0, dtype=np.float64), "depthwise": bn_output.sum(axis=0, dtype=np.float64)}
    for batch_size in (1, 4, 32):
        sums = InputSums().over(model, pixels, batch_size)
        assert {name: images for name, (_, images) in sums.items()} == {"conv": 13, "depthwise": 13}
        for name, (summed, _) in sums.items():
            np.testing.assert_allclose(summed, expected[name], rtol=1e-5)
    growing = InputSums()
    growing.over(model, pixels[:5], 4)
    grown = growing.over(model, pixels, 4)
    for name, (summed, images) in grown.items():
        assert images == 13
        np.testing.assert_allclose(summed, expected[name], rtol=1e-5)
    # Batches of 4 and 1, then of 4 again: one graph, traced once.
    assert growing._summer[2].experimental_get_tracing_count() == 1


def test_input_sums_measured_with_the_models_outputs_are_the_ones_measured_alone_to_the_bit():
    """Where the calibration images are verification images, the pass that gives Keras' predictions measures the
    ladder's first sample and its largest: batch for batch as the ladder's own measurement, one sample after the
    other (5 images then 13, in batches of 4: the last batch of each is short), so the same sums to the bit, and
    the outputs are Keras' predictions of those images."""
    from edgetl.exporting.bias_correction import InputSums
    from edgetl.exporting.keras_passes import keras_probabilities

    model = conv_bn_model()
    pixels = np.random.default_rng(3).uniform(0, 255, (13, 12, 12, 3)).astype(np.float32)
    alone = InputSums()
    measured = {count: alone.over(model, pixels[:count], 4) for count in (5, 13)}
    together = InputSums()
    outputs = together.with_outputs(model, pixels, [13, 5], 4)
    for count in (5, 13):
        assert together.over(model, pixels[:count], 4) is together.measured[count]  # nothing measured again
        assert together.measured[count].keys() == measured[count].keys()
        for name, (summed, images) in together.measured[count].items():
            assert images == measured[count][name][1] == count
            assert np.array_equal(summed, measured[count][name][0])
    np.testing.assert_allclose(outputs, keras_probabilities(model, pixels), rtol=1e-6, atol=1e-6)


def test_an_onnx_graph_rebiased_is_tf2onnxs_graph_of_the_corrected_model():
    """One tf2onnx conversion of the corrected model shows where each folded bias lies; from then on the plain
    graph with any rung's corrections written in is the graph tf2onnx makes of the model so corrected."""
    from edgetl.exporting.onnx import bias_placements, convert_onnx, rebiased

    model = conv_bn_model()
    pixels = np.random.default_rng(1).uniform(100, 140, (32, 12, 12, 3)).astype(np.float32)
    plain = convert_onnx(model)
    with bias_corrected(model, pixels) as corrections:
        corrected = convert_onnx(model)
    with bias_corrected(model, pixels[:8], keep_float=lambda name: name == "depthwise") as partial:
        partly_corrected = convert_onnx(model)
    placements = bias_placements(plain, corrected, corrections)
    assert placements is not None and sorted(placements) == ["conv", "depthwise"]
    for wanted, converted in ((corrections, corrected), (partial, partly_corrected), ({}, plain)):
        written = rebiased(plain, placements, wanted)
        ours, theirs = initializers(written), initializers(converted)
        assert ours.keys() == theirs.keys()
        for name in ours:
            np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6, atol=1e-6)
    assert any(not np.array_equal(initializers(corrected)[name], value) for name, value in initializers(plain).items())
    # A correction with no place found cannot be written; a difference no correction explains teaches no places.
    stranger = {"elsewhere": next(iter(corrections.values()))}
    assert rebiased(plain, placements, stranger) is None
    assert bias_placements(plain, corrected, {"conv": corrections["conv"]}) is None
    # Nor does a graph that differs otherwise: with a zero bias, tf2onnx leaves the depthwise convolution without
    # one until a correction gives it one.
    model = conv_bn_model(depthwise_bias=False)
    plain = convert_onnx(model)
    with bias_corrected(model, pixels) as corrections:
        assert bias_placements(plain, convert_onnx(model), corrections) is None


def test_an_onnx_graphs_folded_biases_are_found_by_their_values_without_converting_the_corrected_model():
    """Each corrected convolution's folded bias is found in the plain graph by the value the model's layers fold
    to: the places a conversion of the corrected model shows, so every rung's corrected graph is the plain one
    with its corrections written in, and no rung converts. Where values do not tell, none are given."""
    import keras

    from edgetl.exporting.bias_correction import folded_biases, holders_of
    from edgetl.exporting.onnx import bias_placements, bias_placements_by_value, convert_onnx, rebiased

    model = conv_bn_model()
    pixels = np.random.default_rng(1).uniform(100, 140, (32, 12, 12, 3)).astype(np.float32)
    plain = convert_onnx(model)
    with bias_corrected(model, pixels) as corrections:
        corrected, folded = convert_onnx(model), folded_biases(model, holders_of(corrections))
    with bias_corrected(model, pixels[:8], keep_float=lambda name: name == "depthwise") as partial:
        partly_corrected, partly_folded = convert_onnx(model), folded_biases(model, holders_of(partial))
    placements = bias_placements_by_value(plain, corrections, folded)
    assert placements == bias_placements(plain, corrected, corrections) and sorted(placements) == ["conv", "depthwise"]
    assert bias_placements_by_value(plain, partial, partly_folded) == {"conv": placements["conv"]}
    for wanted, values, converted in ((corrections, folded, corrected), (partial, partly_folded, partly_corrected)):
        written = rebiased(plain, bias_placements_by_value(plain, wanted, values), wanted)
        ours, theirs = initializers(written), initializers(converted)
        for name in ours:
            np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6, atol=1e-6)
    # Values other than the model's find nothing: a bias moved by more than rounding, a bias of zeros (tf2onnx
    # leaves a zero-bias convolution without one until a correction gives it one).
    moved = {name: [value + 0.01 for value in values] for name, values in folded.items()}
    assert bias_placements_by_value(plain, corrections, moved) is None
    no_bias = conv_bn_model(depthwise_bias=False)
    with bias_corrected(no_bias, pixels) as corrections:
        no_bias_folded = folded_biases(no_bias, holders_of(corrections))
        assert bias_placements_by_value(convert_onnx(no_bias), corrections, no_bias_folded) is None
    # A convolution with a bias of its own before its BatchNormalization: both folded in.
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(5, 3, name="biased")(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization(name="biased_bn")(x))
    biased = keras.Model(inputs, outputs)
    rng = np.random.default_rng(3)
    biased.get_layer("biased").set_weights([rng.normal(0, 1, (3, 3, 3, 5)), rng.normal(0, 1, 5)])
    biased.get_layer("biased_bn").set_weights([rng.uniform(0.5, 2, 5) for _ in range(4)])
    plain = convert_onnx(biased)
    with bias_corrected(biased, pixels) as corrections:
        corrected, folded = convert_onnx(biased), folded_biases(biased, holders_of(corrections))
    placements = bias_placements_by_value(plain, corrections, folded)
    assert placements is not None and placements == bias_placements(plain, corrected, corrections) != {}


def recorded_refinement(monkeypatch) -> dict:
    """Patches the ranking's refinement to record, per layer it scores, the outputs its island file gives and the
    reference they are measured against."""
    import edgetl.exporting.sensitivity as sensitivity

    scored: dict = {}

    def refine(ranked, distance, count=sensitivity.REFINED_LAYERS):
        scored.update({layer: distance(layer) for layer in ranked[:count]})
        return ranked

    monkeypatch.setattr(sensitivity, "refine", refine)
    monkeypatch.setattr(sensitivity, "output_distance", lambda outputs, reference: (outputs, reference))
    return scored


def test_the_tflite_ranking_scores_each_island_as_its_rung_makes_it_against_the_model_uncorrected(monkeypatch):
    """On a bias-corrected graph, each layer's island file is the one the ladder's rung would make (the layer left
    out of bias correction), and it is measured against the model uncorrected, not the corrected float graph."""
    from edgetl.exporting.tflite import TfliteCalibration, _predict, names_layer, rank_calibrated

    model = conv_bn_model()
    pixels = np.random.default_rng(1).uniform(100, 140, (32, 12, 12, 3)).astype(np.float32)
    plain = TfliteCalibration(model, pixels)
    with bias_corrected(model, pixels) as corrections:
        corrected = plain.rebiased(corrections, pixels)
    scored = recorded_refinement(monkeypatch)
    rank_calibrated(corrected, "int8", "minmax")
    assert len(scored) == 2
    reference = _predict(plain.calibrated("minmax"), pixels)
    for layer, (outputs, measured_against) in scored.items():
        # The uncorrected graph, its biases written back: equal to float32 rounding (a correction added and taken off).
        np.testing.assert_allclose(measured_against, reference, rtol=1e-6, atol=1e-5)
        with bias_corrected(model, pixels, keep_float=lambda conv, layer=layer: names_layer(layer, conv)) as kept:
            assert len(kept) == 1  # the island's own correction left out
            rung = TfliteCalibration(model, pixels, plain.measurement, corrections=kept)
        # int8 outputs, on their grid: the same steps (with the island's correction kept, 1 and 4 steps differ).
        np.testing.assert_array_equal(outputs, _predict(rung.quantize("minmax", "int8", (layer,)), pixels))
    assert not np.allclose(_predict(corrected.calibrated("minmax"), pixels), reference, rtol=1e-3)


def onnx_outputs(model_proto, pixels: np.ndarray) -> np.ndarray:
    """The graph's outputs on `pixels` in a default onnxruntime session."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: pixels})[0]


def test_the_onnx_ranking_scores_each_island_as_its_rung_makes_it_against_the_model_uncorrected(tmp_path, monkeypatch):
    import onnx

    from edgetl.exporting.onnx import OnnxCalibration, convert_onnx, pre_processed, rank_calibrated
    from edgetl.exporting.tflite import names_layer

    def work(name: str):
        (tmp_path / name).mkdir()
        return tmp_path / name

    model = conv_bn_model()
    pixels = np.random.default_rng(1).uniform(100, 140, (32, 12, 12, 3)).astype(np.float32)
    plain = convert_onnx(model)
    with bias_corrected(model, pixels) as corrections:
        corrected = OnnxCalibration(convert_onnx(model), pixels, work("corrected"))
    assert len(corrections) == 2
    scored = recorded_refinement(monkeypatch)
    plain_prepared, _ = pre_processed(plain, work("plain"))
    rank_calibrated(corrected, "minmax", plain_prepared=plain_prepared)
    assert len(scored) == 2
    reference = onnx_outputs(plain, pixels)
    for number, (layer, (outputs, measured_against)) in enumerate(scored.items()):
        np.testing.assert_allclose(measured_against, reference, rtol=1e-6)
        with bias_corrected(model, pixels, keep_float=lambda conv, layer=layer: names_layer(layer, conv)) as kept:
            assert len(kept) == 1  # the island's own correction left out
            rung = OnnxCalibration(convert_onnx(model), pixels, work(f"rung{number}"), (corrected.measurement,))
        island = onnx_outputs(rung.quantize("minmax", (layer,)), pixels)
        np.testing.assert_allclose(outputs, island, rtol=1e-5, atol=1e-5)
    corrected_float = onnx_outputs(onnx.load(str(corrected.prepared)), pixels)
    assert not np.allclose(corrected_float, reference, rtol=1e-3)
