"""The model edgetl builds: preprocessing inside, what trains, and where the weights come from."""

import ast
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

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


def test_imagenet_download_failure_is_one_clear_line(tmp_path):
    # A real failed download, in a fresh process: an empty Keras cache (KERAS_HOME, read when Keras is imported),
    # and every URL sent to a proxy on a closed local port.
    code = textwrap.dedent(
        """
        from edgetl.errors import WeightsError
        from edgetl.models.backbones import get_backbone
        from edgetl.models.classifier import build_backbone
        try:
            build_backbone(get_backbone("mobilenetv2"), 96, 0.35, "imagenet")
        except WeightsError as error:
            print("caught:", repr(str(error)))
        """
    )
    closed = "http://127.0.0.1:9"
    environment = os.environ | {"KERAS_HOME": str(tmp_path), "https_proxy": closed, "http_proxy": closed}
    environment |= {"HTTPS_PROXY": closed, "HTTP_PROXY": closed, "no_proxy": "", "NO_PROXY": ""}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    (caught,) = [line for line in result.stdout.splitlines() if line.startswith("caught: ")]  # Keras prints too
    message = ast.literal_eval(caught.removeprefix("caught: "))
    assert "\n" not in message and message.startswith("--weights imagenet: cannot download https://")
    assert "mobilenet_v2_weights" in message and "--weights none" in message
    assert not list((tmp_path / "models").glob("*.h5"))


def test_registry_covers_the_tutorial_backbones():
    assert {"mobilenetv2", "xception", "efficientnetb0", "resnet50v2", "vgg16"} <= set(BACKBONES)
    assert get_backbone("Xception").min_size == 71
