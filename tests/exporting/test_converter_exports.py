"""The TFLite converter's SavedModel of a Keras model is made once per export (exporting/converter_exports.py)."""

from __future__ import annotations

import numpy as np
import pytest


def _model(seed: int):
    """A convolution with its BatchNormalization (the biases bias correction moves), inside a nested model as a
    transfer-learning backbone is, and a classifier head."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    backbone = keras.Model(inputs, keras.layers.ReLU(6.0)(x), name="backbone")
    outer = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(backbone(outer))
    model = keras.Model(outer, keras.layers.Dense(3, activation="softmax", name="head")(features))
    for layer in model.layers[1].layers:  # moving statistics that are not the identity, as trained ones are not
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma * 1.5, beta + 0.2, mean + 0.1, variance * 2.0])
    return model


def _move_biases(model, delta: float) -> None:
    """What bias correction does to a model: its BatchNormalization's beta and the head's bias moved."""
    batch_norm = model.get_layer("backbone").get_layer("conv_bn")
    gamma, beta, mean, variance = batch_norm.get_weights()
    batch_norm.set_weights([gamma, beta - np.float32(delta), mean, variance])
    kernel, bias = model.get_layer("head").get_weights()
    model.get_layer("head").set_weights([kernel, bias + np.float32(delta)])


@pytest.fixture
def real_exports(monkeypatch) -> list[str]:
    """The SavedModels Keras really writes while a test runs (their folders)."""
    import keras

    written = []
    archive_class = type(keras.export.ExportArchive())  # the backend's archive, which ExportArchive() makes
    write_out = archive_class.write_out

    def counted(self, filepath, *args, **kwargs):
        written.append(str(filepath))
        return write_out(self, filepath, *args, **kwargs)

    monkeypatch.setattr(archive_class, "write_out", counted)
    return written


def test_a_models_conversions_after_the_first_take_its_savedmodel_with_the_variables_now_and_make_the_same_bytes(
    real_exports,
):
    """The float32 file, then the int8 file's calibrate-only graph of the model bias-corrected, then the float32
    file again with the corrections given back: one real export, and each conversion the bytes the converter makes
    of the model as it is then (outside the reuse, where every conversion exports)."""
    from edgetl.exporting import tflite
    from edgetl.exporting.converter_exports import converter_exports_kept

    model, pixels = _model(0), np.random.default_rng(0).uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)
    with converter_exports_kept():
        plain = tflite.convert_float32(model)
        _move_biases(model, 0.25)
        corrected = tflite._convert(tflite._calibrating_converter(model, pixels))
        _move_biases(model, -0.25)
        again = tflite.convert_float32(model)
    assert len(real_exports) == 1

    expected_plain = tflite.convert_float32(model)
    _move_biases(model, 0.25)
    expected_corrected = tflite._convert(tflite._calibrating_converter(model, pixels))
    assert len(real_exports) == 3
    assert plain == again == expected_plain
    assert corrected == expected_corrected
    assert corrected != tflite._convert(tflite._calibrating_converter(_model(0), pixels))  # the biases did move


def test_each_model_gets_its_own_savedmodel_and_none_is_kept_after(real_exports):
    """Two models of the same architecture in one export each convert to their own bytes; once the export is done,
    a conversion exports again."""
    from edgetl.exporting import tflite
    from edgetl.exporting.converter_exports import converter_exports_kept

    first, second = _model(1), _model(2)
    with converter_exports_kept():
        made = [tflite.convert_float32(model) for model in (first, second, first)]
    assert len(real_exports) == 2
    assert made[0] == made[2] != made[1]
    assert tflite.convert_float32(second) == made[1]
    assert len(real_exports) == 3


def test_a_kept_savedmodel_that_cannot_be_written_is_exported_anew(real_exports, monkeypatch):
    """Writing the variables into the kept copy fails (a full disk, say): the conversion exports as the converter
    does, to the same bytes, instead of the converter taking the error for a model it cannot save and converting
    it another way."""
    from edgetl.exporting import converter_exports, tflite
    from edgetl.exporting.converter_exports import converter_exports_kept

    model = _model(3)
    expected = tflite.convert_float32(model)
    with converter_exports_kept():
        tflite.convert_float32(model)
        monkeypatch.setattr(converter_exports, "_write_variables", lambda prefix, variables: 1 / 0)
        assert tflite.convert_float32(model) == expected
    assert len(real_exports) == 3  # the kept copy was not used
