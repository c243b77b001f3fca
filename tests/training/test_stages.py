"""Which layers train in each stage, and the head model used for cached stage-1 features."""

import numpy as np
import pytest

from edgetl.data.options import AugmentConfig
from edgetl.data.pipeline import DecodedSubset
from edgetl.errors import EdgetlError
from edgetl.models.backbones import get_backbone
from edgetl.models.classifier import HeadConfig, build_classifier
from edgetl.models.finetune import first_unfrozen_index, unfreeze_top
from edgetl.training import features as features_module
from edgetl.training.augment import build_augmenter
from edgetl.training.features import (
    POOL_LAYER_NAME,
    backbone_features,
    head_model,
    inference_function,
    inference_with_constant_weights,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pretrained_model(tmp_path_factory):
    from edgetl.models.classifier import build_backbone

    spec = get_backbone("mobilenetv2")
    path = tmp_path_factory.mktemp("w") / "b.weights.h5"
    build_backbone(spec, 32, 0.35, "none").save_weights(path)
    return build_classifier(spec, 4, 32, 0.35, str(path), HeadConfig(dropout=0.2, hidden_units=8))


def trainable_layers(backbone):
    return {layer.name for layer in backbone.layers if layer.trainable and layer.weights}


def test_stage1_trains_the_head_only(pretrained_model):
    trainable = {w.path.split("/")[0] for w in pretrained_model.trainable_weights}
    assert trainable == {"hidden", "probabilities"}


def test_stage2_unfreezes_the_top_but_never_batchnorm(pretrained_model):
    import keras

    backbone = pretrained_model.get_layer("backbone")
    layers = backbone.layers
    unfrozen = unfreeze_top(pretrained_model, layers=10)
    assert set(unfrozen) == trainable_layers(backbone)
    top = layers[-10:]
    expected = {layer.name for layer in top if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)}
    assert set(unfrozen) == expected and "Conv_1" in expected
    assert all(not layer.trainable for layer in layers[:-10])
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(not layer.trainable for layer in norms)

    unfrozen = unfreeze_top(pretrained_model, from_layer="block_16_expand")
    names = [layer.name for layer in layers]
    start = names.index("block_16_expand")
    assert "block_16_expand" in unfrozen and "block_15_expand" not in unfrozen
    assert all(not layer.trainable for layer in layers[:start])
    assert all(not layer.trainable for layer in norms)


def test_fine_tune_choice_errors():
    names = ["input", "conv", "bn", "relu"]
    assert first_unfrozen_index(names, None, None) == 0
    assert first_unfrozen_index(names, 2, None) == 2
    assert first_unfrozen_index(names, 99, None) == 0
    with pytest.raises(EdgetlError, match="--fine-tune-from block_99: no such layer"):
        first_unfrozen_index(names, None, "block_99")
    with pytest.raises(EdgetlError, match="pass only one"):
        first_unfrozen_index(names, 2, "conv")


def test_head_model_shares_the_full_models_head(pretrained_model):
    head = head_model(pretrained_model)
    features = np.ones((2, pretrained_model.get_layer("pool").output.shape[-1]), dtype="float32")
    before = np.asarray(head(features))
    kernel = pretrained_model.get_layer("probabilities").kernel
    kernel.assign(kernel.numpy() * 2.0)
    assert not np.allclose(np.asarray(head(features)), before)


@pytest.mark.parametrize(("constant_weights", "spilled"), [(True, False), (False, False), (True, True)])
def test_cached_features_then_head_give_the_full_models_output(
    pretrained_model, monkeypatch, tmp_path, constant_weights, spilled
):
    from edgetl.data.pipeline import RecordFile, StreamedSubset
    from edgetl.training.features import features_dataset

    rng = np.random.default_rng(0)
    # Slices of 16 images at 32 px: three slices, the last one short, and a subset of one image; one trace.
    monkeypatch.setattr(features_module, "EXTRACTION_PIXELS", 16 * 32 * 32)
    if not constant_weights:  # as for a backbone of more weights than pay to be constants
        monkeypatch.setattr(features_module, "CONSTANT_WEIGHTS_MAX_BYTES", 0)
    if spilled:  # features over the memory budget go to a file
        monkeypatch.setattr(features_module, "FEATURE_MEMORY_BYTES", 0)
    sizes = (37, 1)
    subsets = [
        DecodedSubset(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n, dtype=np.int32), [], [])
        for n in sizes
    ]
    # The pixels may be streamed: a subset is anything that reads pixels by index.
    subsets[0] = StreamedSubset(subsets[0].labels, [], [], subsets[0].shape, subsets[0].read)
    features = backbone_features(pretrained_model, subsets, batch_size=16, spill_folder=tmp_path)
    assert all(isinstance(f, RecordFile) is spilled for f in features)
    assert sorted(path.name for path in tmp_path.iterdir()) == (["features-0.f32", "features-1.f32"] if spilled else [])
    width = pretrained_model.get_layer("pool").output.shape[-1]
    head = head_model(pretrained_model)
    for subset, subset_features, n in zip(subsets, features, sizes, strict=True):
        rows = subset_features.read(np.arange(n)) if spilled else subset_features
        assert rows.shape == (n, width) and len(subset_features) == n
        assert rows.dtype == np.float32
        expected = np.asarray(pretrained_model(subset.read(np.arange(n)).astype("float32"), training=False))
        np.testing.assert_allclose(np.asarray(head(rows, training=False)), expected, atol=1e-5)
        # The head trains on every row once an epoch, each with its own label, in or out of memory.
        epoch = list(features_dataset(subset_features, subset.labels, batch_size=8, shuffle_seed=1))
        labels = np.concatenate([y.numpy() for _, y in epoch])
        assert sorted(labels) == list(range(n))
        np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in epoch]), rows[labels])


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_features_are_computed_with_the_weights_as_graph_constants(pretrained_model, policy):
    import keras

    pixels = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    keras.mixed_precision.set_global_policy(policy)
    try:
        # Built under the policy, as train() builds its model; the weights are the pretrained model's.
        model = build_classifier(get_backbone("mobilenetv2"), 4, 32, 0.35, "none", HeadConfig(hidden_units=8))
        model.set_weights(pretrained_model.get_weights())
        extractor = keras.Model(model.inputs, model.get_layer(POOL_LAYER_NAME).output)
        extract = inference_with_constant_weights(extractor)
        expected = np.asarray(extractor(pixels, training=False), np.float32)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # No variable is read: Grappler can fold the weights (the speed-up depends on it).
    op_types = {op.type for op in extract.graph.get_operations()}
    assert "ReadVariableOp" not in op_types and "Conv2D" in op_types
    atol = 1e-5 if policy == "float32" else 1e-2 * np.abs(expected).max()
    np.testing.assert_allclose(np.asarray(extract(pixels), np.float32), expected, atol=atol)
    assert (np.asarray(extract(pixels)).dtype == np.float16) is (policy == "mixed_float16")


def test_only_small_backbones_get_their_weights_as_constants(pretrained_model, monkeypatch):
    import keras

    extractor = keras.Model(pretrained_model.inputs, pretrained_model.get_layer(POOL_LAYER_NAME).output)
    weight_bytes = sum(np.asarray(v).nbytes for v in extractor.weights)

    def reads_variables() -> bool:
        return "ReadVariableOp" in {op.type for op in inference_function(extractor).graph.get_operations()}

    monkeypatch.setattr(features_module, "CONSTANT_WEIGHTS_MAX_BYTES", weight_bytes)
    assert not reads_variables()
    monkeypatch.setattr(features_module, "CONSTANT_WEIGHTS_MAX_BYTES", weight_bytes - 1)
    assert reads_variables()


def test_augmenter_changes_pixels_and_zero_strength_leaves_layers_out():
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    augmenter = build_augmenter(AugmentConfig(), seed=1)
    assert len(augmenter.layers) == 6
    assert not np.allclose(np.asarray(augmenter(pixels, training=True)), pixels)
    only_flip = build_augmenter(AugmentConfig("vertical", 0, 0, 0, 0, 0), seed=1)
    assert [layer.name for layer in only_flip.layers] == ["flip"]
    assert build_augmenter(AugmentConfig("none", 0, 0, 0, 0, 0), seed=1) is None


def test_balanced_class_weight_evens_out_skewed_classes():
    from edgetl.training.fit import balanced_class_weight

    labels = np.asarray([0] * 8 + [1] * 2 + [2] * 2)
    weights = balanced_class_weight(labels, 3)
    assert weights == pytest.approx({0: 0.5, 1: 2.0, 2: 2.0})
    assert sum(weights[label] for label in labels) == pytest.approx(len(labels))


def test_training_state_built_first_so_the_train_step_is_traced_once():
    import keras

    from edgetl.training.features import features_dataset
    from edgetl.training.stages import _build_training_state

    class CountingTraces(keras.Model):
        traces = 0

        def train_step(self, data):
            self.traces += 1  # Python runs here only while TensorFlow traces the step
            return super().train_step(data)

    features = keras.Input((16,))
    model = CountingTraces(features, keras.layers.Dense(3, activation="softmax")(features))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    data = features_dataset(rng.random((40, 16), np.float32), rng.integers(0, 3, 40), batch_size=16, shuffle_seed=1)
    _build_training_state(model, data)
    assert model.optimizer.built and len(model.optimizer.variables) > 1
    model.fit(data, epochs=2, shuffle=False, verbose=0)
    assert model.traces == 1
