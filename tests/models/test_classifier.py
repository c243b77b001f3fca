"""The model edgetl builds: preprocessing inside, what trains, and where the weights come from."""

import numpy as np
import pytest

from edgetl.errors import WeightsError
from edgetl.models.backbones import BACKBONES, get_backbone
from edgetl.models.classifier import HeadConfig, build_backbone, build_classifier

pytestmark = pytest.mark.slow


def tiny(weights="none", backbone="mobilenetv2", size=32, alpha=0.35):
    return build_classifier(
        get_backbone(backbone), 3, size, alpha if backbone == "mobilenetv2" else None, weights, HeadConfig()
    )


def test_backbone_preprocessing_is_inside_the_model():
    import keras

    model = tiny()
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    rescaled = model.get_layer("rescaling")(pixels)
    np.testing.assert_allclose(np.asarray(rescaled), pixels / 127.5 - 1.0, atol=1e-6)
    assert model.input.name == "pixels" or model.inputs[0].name == "pixels"
    assert isinstance(model.get_layer("probabilities"), keras.layers.Dense)


def test_caffe_preprocessing_flips_channels_and_subtracts_the_mean():
    from edgetl.models.classifier import preprocessing_layers
    from edgetl.runtime.metadata import CAFFE_MODE

    ((conv, weights),) = preprocessing_layers(CAFFE_MODE)
    conv.build((None, 1, 1, 3))
    conv.set_weights(weights)
    out = np.asarray(conv(np.array([[[[10.0, 20.0, 30.0]]]], dtype="float32")))[0, 0, 0]
    np.testing.assert_allclose(out, [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)


def test_from_scratch_trains_everything_with_fast_batchnorm():
    import keras

    model = tiny("none")
    backbone = model.get_layer("backbone")
    assert backbone.trainable
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == 0.9 for layer in norms)


def test_local_weights_file_is_loaded_and_backbone_frozen(tmp_path):
    spec = get_backbone("mobilenetv2")
    source = build_backbone(spec, 32, 0.35, "none")
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    model = build_classifier(spec, 3, 32, 0.35, str(path), HeadConfig())
    backbone = model.get_layer("backbone")
    assert not backbone.trainable
    for mine, theirs in zip(backbone.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    trainable = {w.path.split("/")[0] for w in model.trainable_weights}
    assert trainable == {"probabilities"}


def test_imagenet_download_failure_is_one_clear_line(monkeypatch):
    from keras.src.utils import file_utils

    def offline(fname, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsError) as caught:
        build_backbone(get_backbone("mobilenetv2"), 96, 0.35, "imagenet")
    message = str(caught.value)
    assert "\n" not in message
    assert "mobilenet_v2_weights" in message and "--weights none" in message


def test_registry_covers_the_tutorial_backbones():
    assert {"mobilenetv2", "xception", "efficientnetb0", "resnet50v2", "vgg16"} <= set(BACKBONES)
    assert get_backbone("Xception").min_size == 71
