"""The int8 recipe ladder: the order it tries recipes in, where it stops, and what it keeps."""

import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgetl.exporting.int8 import (
    CONFIDENT_AGREEMENT_TARGET,
    FLOAT_LAYER_STEPS,
    Int8Recipe,
    Trial,
    climb,
    integer_rungs,
    settled,
)
from edgetl.exporting.verify import Fidelity

LAYERS = [f"layer{i}" for i in range(40)]
INTEGER = ["minmax-200+bias", "minmax-200", "minmax-600+bias", "percentile-600+bias", "entropy-600+bias"]


def fidelity(agreement: float) -> Fidelity:
    return Fidelity(100, agreement, None, None, 0.5, [], confident_agreement=agreement, mean_probability_diff=0.1)


def ladder(agreements: dict[str, float], gate: float, rank=True):
    """Climb with recipes whose agreement is looked up by name (0.5 when not listed)."""
    tried = []

    def attempt(recipe: Int8Recipe, rival: float | None) -> Trial:
        tried.append(recipe.name)
        agreement = agreements.get(recipe.name, 0.5)
        return Trial(fidelity(agreement), agreement >= gate, 1000 + len(recipe.float_layers), recipe.name)

    rungs = integer_rungs(200, 1000, ("minmax", "percentile", "entropy"))
    result = climb(rungs, attempt, (lambda recipe: LAYERS) if rank else None)
    return result, tried


def test_integer_rungs_calibrate_on_more_images_then_other_methods():
    names = [r.name for r in integer_rungs(200, 1000, ("minmax", "percentile", "entropy"))]
    assert names == ["minmax-200+bias", "minmax-200", "minmax-600+bias", "percentile-600+bias", "entropy-600+bias"]
    # A pool no larger than the sample: no "more images" rung, every method on what there is.
    names = [r.name for r in integer_rungs(200, 150, ("minmax", "percentile"))]
    assert names == ["minmax-150+bias", "minmax-150", "percentile-150+bias"]


def test_the_first_recipe_that_passes_is_kept_and_nothing_after_it_is_tried():
    result, tried = ladder({"minmax-200+bias": 0.8, "minmax-200": 0.95}, gate=0.9)
    assert tried == ["minmax-200+bias", "minmax-200"]
    assert result.recipe.name == "minmax-200" and result.chosen.kept == "minmax-200"
    assert [(a.recipe, a.passed) for a in result.attempts] == [("minmax-200+bias", False), ("minmax-200", True)]
    assert result.attempts[1].agreement == 0.95 and result.attempts[1].float_layers == []
    assert result.attempts[1].bias_correction is False


def test_float_fallback_keeps_more_and_more_layers_in_float():
    result, tried = ladder({"percentile-600+bias": 0.85, "percentile-600+bias+float4": 0.93}, gate=0.9)
    # Float islands start from the best integer recipe as it is, bias correction included.
    floats = ["percentile-600+bias+float1", "percentile-600+bias+float2", "percentile-600+bias+float4"]
    assert tried == INTEGER + floats
    assert result.recipe.float_layers == tuple(LAYERS[:4]) and result.chosen.passed
    assert result.attempts[-1].float_layers == LAYERS[:4]


def test_when_nothing_passes_the_closest_file_is_kept():
    result, tried = ladder({"minmax-200": 0.88, "minmax-200+float16": 0.87}, gate=0.99)
    assert len(tried) == len(INTEGER) + len(FLOAT_LAYER_STEPS)
    assert result.recipe.name == "minmax-200" and not result.chosen.passed
    assert not any(a.passed for a in result.attempts)


def test_integer_only_never_keeps_a_layer_in_float():
    result, tried = ladder({"minmax-600+bias": 0.88}, gate=0.99, rank=False)
    assert tried == INTEGER
    assert result.recipe.name == "minmax-600+bias" and result.recipe.float_layers == ()


def confident_ladder(results: dict[str, tuple[float, float]], float_islands: bool):
    """Climb a gate of 0.9 with (agreement, confident agreement) looked up by name ((0.5, 0.5) when not listed),
    with float islands and the confident target, or integer-only."""
    tried = []

    def attempt(recipe: Int8Recipe, rival: float | None) -> Trial:
        tried.append(recipe.name)
        agreement, confident = results.get(recipe.name, (0.5, 0.5))
        measured = Fidelity(100, agreement, None, None, 0.5, [], confident_agreement=confident)
        return Trial(measured, agreement >= 0.9, 1000, recipe.name)

    rungs = integer_rungs(200, 1000, ("percentile", "minmax"))
    rank = (lambda recipe: LAYERS) if float_islands else None
    return climb(rungs, attempt, rank, CONFIDENT_AGREEMENT_TARGET if float_islands else None), tried


def test_with_float_islands_a_file_that_flips_confident_images_climbs_on_to_them():
    passes_but_flips = {"percentile-200+bias": (0.91, 0.98), "percentile-200+bias+float2": (0.905, 1.0)}
    result, tried = confident_ladder(passes_but_flips, float_islands=True)
    # The other integer-only rungs first (one may reach the target without float layers), then float islands
    # from the file that passed.
    integer = ["percentile-200+bias", "percentile-200", "percentile-600+bias", "minmax-600+bias"]
    assert tried == integer + ["percentile-200+bias+float1", "percentile-200+bias+float2"]
    assert result.recipe.name == "percentile-200+bias+float2" and result.chosen.fidelity.confident_agreement == 1.0

    # Integer-only: the file that passes its gate ends the climb, confident flips or not.
    result, tried = confident_ladder(passes_but_flips, float_islands=False)
    assert tried == ["percentile-200+bias"] and result.recipe.name == "percentile-200+bias"


def test_when_no_float_island_reaches_the_confident_target_the_best_passing_file_is_kept():
    results = {"percentile-200+bias": (0.91, 0.98), "percentile-200+bias+float8": (0.89, 0.985)}
    result, tried = confident_ladder(results, float_islands=True)
    assert len(tried) == 4 + len(FLOAT_LAYER_STEPS)
    # float8 came closer on the confident images but fails the gate: the passing integer file is kept.
    assert result.recipe.name == "percentile-200+bias" and result.chosen.passed


@pytest.mark.parametrize("layers", [[], ["only"]])
def test_few_rankable_layers_are_tried_once_each(layers):
    tried = []

    def attempt(recipe, rival):
        tried.append(recipe.name)
        return Trial(fidelity(0.5), False, 1, None)

    climb([Int8Recipe(10, "minmax")], attempt, lambda recipe: layers)
    assert tried == ["minmax-10+bias"] + (["minmax-10+bias+float1"] if layers else [])


def test_a_converted_tensor_name_names_the_keras_layers_fused_into_it():
    from edgetl.exporting.tflite import names_layer

    name = (
        "m_1/mobilenetv2_1/expanded_conv_depthwise_relu_1/Relu6;m_1/mobilenetv2_1/expanded_conv_depthwise_1/depthwise"
    )
    assert names_layer(name, "expanded_conv_depthwise")
    assert not names_layer(name, "expanded_conv") and not names_layer(name, "expanded_conv_project")
    assert names_layer("Conv1/convolution", "Conv1") and not names_layer("Conv1/convolution", "Conv")


def tiny_graph():
    """pixels (N, 2, 2, 3) -> Relu -> Sigmoid, shapes left to ONNX's inference: 12 floats an image at each step."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["pixels"], ["relu"]), helper.make_node("Sigmoid", ["relu"], ["probabilities"])],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 2, 2, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_activation_bytes_count_every_computed_float_tensor_of_one_image():
    from edgetl.exporting.onnx import activation_bytes_per_image

    assert activation_bytes_per_image(tiny_graph()) == 2 * 12 * 4  # relu and probabilities, not the input


def inverted_residual_classifier():
    """MobileNetV2's building block, small: expand, depthwise, project, residual add, then the classifier; eight
    weighted layers, random weights (ranking needs no training)."""
    import keras

    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6", name="stem")(x)
    for block in range(2):  # named as keras.applications names them: no name is another's prefix plus "_<n>"
        y = keras.layers.Conv2D(24, 1, activation="relu6", name=f"block{block}_expand")(x)
        y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name=f"block{block}_depthwise")(y)
        x = keras.layers.Add()([x, keras.layers.Conv2D(8, 1, name=f"block{block}_project")(y)])
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs)


WEIGHTED_LAYERS = 8  # the stem, three per block, the classifier


@pytest.mark.slow
def test_the_most_sensitive_layers_are_ranked_and_kept_in_float_by_both_quantisers():
    """The fallback's two halves: every weighted layer ranked (each kept in float alone, in turn), and the first
    few of them left in float in the written file; the rest stays int8."""
    import numpy as np

    from edgetl.exporting.onnx import (
        convert_onnx,
        node_of,
        onnx_op_report,
        quantize_onnx_int8,
        rank_onnx_int8_sensitivity,
    )
    from edgetl.exporting.tflite import convert_int8, names_layer, rank_int8_sensitivity, tflite_op_report

    model = inverted_residual_classifier()
    pixels = np.random.default_rng(0).uniform(0, 255, (24, 24, 24, 3)).astype(np.float32)

    ranked = rank_int8_sensitivity(model, pixels, "int8")
    assert len(ranked) == len(set(ranked)) == WEIGHTED_LAYERS
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "float2.tflite"
        path.write_bytes(convert_int8(model, pixels, "int8", tuple(ranked[:2])))
        ops = tflite_op_report(path)
    assert sum(ops.float_ops.values()) == 2 and ops.int8_operators >= ops.operators - 2

    float_model = convert_onnx(model)
    # Converted again (as the bias-corrected model is), the graph has the same node names: a layer ranked on one
    # conversion is found in the other.
    assert [node.name for node in convert_onnx(model).graph.node] == [node.name for node in float_model.graph.node]
    ranked = rank_onnx_int8_sensitivity(float_model, pixels)
    assert len(ranked) == len(set(ranked)) == WEIGHTED_LAYERS
    # Each name says which Keras layer it is (tf2onnx's own node names do not), so bias correction can skip it.
    weighted = [layer.name for layer in model.layers if layer.weights]
    assert all(sum(names_layer(name, layer) for layer in weighted) == 1 for name in ranked), ranked
    quantized = quantize_onnx_int8(float_model, pixels, "minmax", tuple(ranked[:3]))
    assert {node.name for node in quantized.graph.node} >= {node_of(name) for name in ranked[:3]}
    assert sum(onnx_op_report(quantized).float_ops.values()) >= 3


def test_an_attempt_cannot_settle_exactly_when_the_whole_verification_would_say_so():
    """`cannot_settle` on the flips so far is the verdict of the whole verification with no flip among the images
    left (the best they can give): for every count of flips on 40 images, 13 of them confident."""
    from edgetl.exporting.int8 import cannot_settle

    images, confident_images = 40, 13
    for gate in (0.9, 0.85, 0.0):
        for target in (CONFIDENT_AGREEMENT_TARGET, None):
            for flips in range(images + 1):
                for confident_flips in range(min(flips, confident_images) + 1):
                    agreement = float(np.mean(np.arange(images) >= flips))  # as verify.compare takes the share
                    confident = float(np.mean(np.arange(confident_images) >= confident_flips))
                    whole = Fidelity(images, agreement, None, None, 0.5, [], confident_agreement=confident)
                    verdict = settled(Trial(whole, agreement >= gate, 1), target)
                    stopped = cannot_settle(flips, images, confident_flips, confident_images, gate, target)
                    assert stopped == (not verdict), (gate, target, flips, confident_flips)


def stopping_ladder(whole: dict[str, tuple[float, float]], float_islands: bool):
    """A gate-0.9 climb whose attempts stop after 10 of 100 images whenever their whole figures (agreement,
    confident agreement; (0.5, 0.5) unlisted) can neither settle nor beat their rival; their partial figures
    are then 0.1."""
    asked, finished = [], []
    target = CONFIDENT_AGREEMENT_TARGET if float_islands else None

    def attempt(recipe: Int8Recipe, rival: float | None) -> Trial:
        asked.append((recipe.name, rival))
        agreement, confident = whole.get(recipe.name, (0.5, 0.5))
        full = Fidelity(100, agreement, None, None, 0.5, [], confident_agreement=confident)
        trial = Trial(full, agreement >= 0.9, 1000, recipe.name)
        if settled(trial, target) or (rival is not None and agreement > rival):
            return trial
        partial = Fidelity(10, 0.1, None, None, 0.5, [], confident_agreement=0.1)

        def finish() -> Trial:
            finished.append(recipe.name)
            return trial

        return Trial(partial, False, 1000, recipe.name, finish)

    rungs = integer_rungs(200, 1000, ("percentile", "minmax"))
    rank = (lambda recipe: LAYERS) if float_islands else None
    return climb(rungs, attempt, rank, target), asked, finished


def test_where_float_islands_follow_an_integer_rung_is_run_whole_while_it_may_still_be_their_start():
    whole = {
        "percentile-200+bias": (0.85, 0.95),
        "percentile-200": (0.8, 0.9),
        "percentile-600+bias": (0.89, 1.0),
        "minmax-600+bias": (0.87, 1.0),
        "percentile-600+bias+float4": (0.93, 1.0),
    }
    result, asked, finished = stopping_ladder(whole, float_islands=True)
    # Each integer rung's rival is the best agreement so far (none for the first: it runs whole); the islands
    # have none: they stop as soon as they cannot settle.
    assert asked[:4] == [
        ("percentile-200+bias", -np.inf),
        ("percentile-200", 0.85),
        ("percentile-600+bias", 0.85),
        ("minmax-600+bias", 0.89),
    ]
    assert [rival for name, rival in asked if "float" in name] == [None] * 3
    # The islands start from the best integer rung (percentile-600+bias); those stopped are neither passed nor
    # failed.
    assert result.recipe.name == "percentile-600+bias+float4" and finished == []
    assert [(a.recipe, a.images, a.passed) for a in result.attempts if a.passed is None] == [
        ("percentile-200", 10, None),
        ("minmax-600+bias", 10, None),
        ("percentile-600+bias+float1", 10, None),
        ("percentile-600+bias+float2", 10, None),
    ]
    assert result.attempts[-1].images == 100 and result.attempts[-1].passed is True


def test_an_attempt_can_be_left_unrun_only_where_it_can_neither_settle_nor_beat_its_rival():
    from edgetl.exporting.int8 import cannot_matter, cannot_settle

    for flips in range(41):
        for rival in (None, -np.inf, 0.8, 0.875, 0.95):
            stops = cannot_matter(flips, 40, 0, 13, 0.9, None, rival)
            beaten = rival is None or (40 - flips) / 40 <= rival
            assert stops == (cannot_settle(flips, 40, 0, 13, 0.9, None) and beaten), (flips, rival)
    assert not cannot_matter(40, 40, 13, 13, 0.9, CONFIDENT_AGREEMENT_TARGET, -np.inf)  # the first runs whole
    assert cannot_matter(5, 40, 0, 13, 0.9, None, 0.875) and not cannot_matter(5, 40, 0, 13, 0.9, None, 0.87)


def test_when_no_attempt_settles_every_stopped_attempt_is_run_to_the_end_before_the_closest_is_kept():
    whole = {"percentile-200": (0.88, 0.9), "minmax-600+bias": (0.85, 0.8)}
    result, asked, finished = stopping_ladder(whole, float_islands=False)
    assert all(rival is None for _, rival in asked)  # integer-only: every attempt may stop once it cannot settle
    assert finished == [name for name, _ in asked]
    assert [a.images for a in result.attempts] == [100] * len(asked)
    assert result.recipe.name == "percentile-200" and result.chosen.fidelity.agreement == 0.88
    assert [a.passed for a in result.attempts] == [False] * len(asked)


def test_a_run_stopped_and_gone_on_with_gives_what_one_run_in_the_images_order_gives():
    """Confident images first, each group least sure first; stopped once two confident images flipped, then gone
    on with in another 'session': the predictions, the flips and the figures are the whole run's."""
    from edgetl.exporting.verify import OrderedRun, compare, compare_run, verification_order

    rng = np.random.default_rng(0)
    keras = rng.dirichlet(np.full(5, 0.3), size=60).astype(np.float32)
    exported = (keras + rng.normal(0, 0.3, keras.shape)).clip(0, None).astype(np.float32)
    labels = rng.integers(0, 5, 60)
    pixels = np.arange(60)[:, None]  # an image is its position: the "file" looks its probabilities up

    def predict(batch):
        return exported[batch[:, 0]]

    order = verification_order(keras)
    confident = keras.max(axis=1) >= 0.5
    assert sorted(order) == list(range(60)) and confident[order].tolist() == sorted(confident, reverse=True)
    margins = np.sort(keras, axis=1)[:, -1] - np.sort(keras, axis=1)[:, -2]
    for group in (order[: confident.sum()], order[confident.sum() :]):
        assert np.all(np.diff(margins[group]) >= 0)

    whole = compare(exported, keras, labels)
    run = OrderedRun(order, keras, batch=4)
    run.go_on(predict, pixels, lambda so_far: so_far.confident_flips >= 2)
    assert run.confident_flips >= 2 and not run.complete and run.done % 4 == 0  # stopped after a whole batch
    partial = compare_run(run, keras, labels)
    assert partial.images == run.done and set(partial.flipped) <= set(order[: run.done].tolist())
    run.go_on(predict, pixels)
    assert run.complete
    assert compare_run(run, keras, labels) == whole
    in_order = OrderedRun.in_order(60, batch=7)
    in_order.go_on(predict, pixels)
    assert compare_run(in_order, keras, labels) == whole
    assert run.flips == len(whole.flipped)
    assert run.confident_flips == int(round((1 - whole.confident_agreement) * whole.confident_images))
