"""`edgetl export model.keras`: a Keras model edgetl did not train, loaded in safe mode unless trusted."""

import json

import numpy as np
import pytest

from tests.helpers import invoke
from tests.test_cli import assert_one_line_error

pytestmark = pytest.mark.slow


def small_classifier(with_lambda: bool, size: int | None):
    """A notebook-style model: 3 classes; either scales pixels itself in a Lambda, or expects [-1, 1] input."""
    import keras

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs) if with_lambda else inputs
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3)(x)  # logits: edgetl adds the softmax
    model = keras.Model(inputs, outputs, name="notebook_model")
    model(np.zeros((1, size or 32, size or 32, 3), np.float32))
    return model


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("lambda") / "notebook.keras"
    small_classifier(with_lambda=True, size=32).save(path)
    return path


def test_safe_mode_refuses_a_lambda_layer(lambda_model, outside_data, tmp_path):
    result = invoke(
        "export", lambda_model, "--labels", outside_data / "labels.txt", "--calibration", outside_data / "images",
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert_one_line_error(result, str(lambda_model), "Lambda", "--trust-model")
    assert not (tmp_path / "out").exists()


def test_trusted_lambda_model_exports_with_its_labels(lambda_model, outside_data, tmp_path):
    from edgetl.runtime.engine import open_engine
    from edgetl.runtime.image import load_image

    out = tmp_path / "out"
    result = invoke(
        "export", lambda_model, "--labels", outside_data / "labels.txt", "--calibration", outside_data / "images",
        "--out", out, "--trust-model", "--formats", "tflite-float32,tflite-int8", "--calibration-samples", 12,
        "--min-agreement", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = {r["format"]: r for r in json.loads((out / "exports.json").read_text())}
    assert set(records) == {"tflite-float32", "tflite-int8"}
    assert records["tflite-float32"]["images"] == 27  # every calibration image verifies the exports
    assert records["tflite-float32"]["agreement"] == 1.0
    assert records["tflite-int8"]["calibration_images"] == 12
    engine = open_engine(out / "exports" / "model_float32.tflite")
    assert engine.labels == ["two", "one", "three"] and engine.input_size == (32, 32)
    assert engine.metadata.extra["softmax_added"] is True
    image = sorted((outside_data / "images" / "one").iterdir())[0]
    probabilities = engine.predict(load_image(image, (32, 32))[np.newaxis])[0]
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)


def test_plain_model_loads_safely_with_its_normalization(outside_data, tmp_path):
    import onnx

    from edgetl.runtime.engine import open_engine

    path = tmp_path / "plain.keras"
    model = small_classifier(with_lambda=False, size=None)
    model.save(path)
    common = ("export", path, "--labels", outside_data / "labels.txt", "--calibration", outside_data / "images")
    assert_one_line_error(invoke(*common), "input size is not fixed", "--image-size")
    out = tmp_path / "out"
    result = invoke(*common, "--out", out, "--image-size", 32, "--normalization", "tf", "--formats", "onnx",
                    "--opset", 15)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert max(o.version for o in onnx.load(str(out / "exports" / "model.onnx")).opset_import if o.domain == "") == 15
    engine = open_engine(out / "exports" / "model.onnx")
    assert engine.metadata.normalization.mode == "tf" and engine.metadata.normalization.inside_model
    # The exported file takes raw pixels: the tf-mode scaling now sits in front of the notebook model.
    pixels = np.full((1, 32, 32, 3), 255.0, np.float32)
    expected = model.predict(pixels / 127.5 - 1.0, verbose=0)
    expected = np.exp(expected) / np.exp(expected).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(engine.predict(pixels), expected, atol=1e-5)
    # The LiteRT quantizer path writes the same int8 file name, recorded with its quantizer.
    result = invoke(*common, "--out", out, "--image-size", 32, "--normalization", "tf", "--formats", "tflite-int8",
                    "--quantizer", "ai-edge", "--calibration-samples", 12, "--min-agreement", 0)  # fmt: skip
    assert result.exit_code == 0, result.output
    records = {r["format"]: r for r in json.loads((out / "exports.json").read_text())}
    assert set(records) == {"onnx", "tflite-int8"}  # the earlier export stays listed
    assert records["tflite-int8"]["quantizer"] == "ai-edge" and records["tflite-int8"]["input_dtype"] == "int8"
    assert records["tflite-int8"]["int8_op_share"] > 0.5


def test_outside_model_needs_labels_and_images(tmp_path, outside_data):
    model = tmp_path / "m.keras"
    model.write_bytes(b"x")
    assert_one_line_error(invoke("export", model), "--labels and --calibration")
    bad_labels = tmp_path / "labels.txt"
    bad_labels.write_text("two\none\n")
    result = invoke("export", model, "--labels", bad_labels, "--calibration", outside_data / "images")
    assert_one_line_error(result, "folder 'three' is not a class")


def test_converter_failure_is_one_line_and_the_trace_goes_to_the_log(lambda_model, outside_data, tmp_path, monkeypatch):
    import dataclasses

    from edgetl.exporting import exporter

    def explode(model, inputs):
        raise RuntimeError("loc(fused): 'tfl.conv_2d' op is broken here\nline two of a long trace\nline three")

    broken = dataclasses.replace(exporter.FORMATS["tflite-float16"], convert=explode)
    monkeypatch.setitem(exporter.FORMATS, "tflite-float16", broken)
    out = tmp_path / "out"
    result = invoke(
        "export", lambda_model, "--labels", outside_data / "labels.txt", "--calibration", outside_data / "images",
        "--out", out, "--trust-model", "--formats", "tflite-float32,tflite-float16",
    )  # fmt: skip
    assert_one_line_error(result, "tflite-float16 export failed", "'tfl.conv_2d' op is broken here", "export.log")
    log = (out / "logs" / "export.log").read_text()
    assert "Traceback" in log and "line three" in log
    # What was done before the failure stays: the float32 file and its record.
    assert [r["format"] for r in json.loads((out / "exports.json").read_text())] == ["tflite-float32"]
    assert (out / "exports" / "model_float32.tflite").is_file()


def test_int8_file_with_float_ops_fails_and_names_them(outside_data, tmp_path):
    """The converter leaves an op without an int8 kernel in float even when only int8 kernels are allowed:
    the written file is checked, the op named, the export failed, the file kept."""
    from dataclasses import replace

    import keras

    from edgetl.data.folder import Example, read_class_folders
    from edgetl.data.pipeline import decode_subset
    from edgetl.exporting.exporter import ExportOptions, export_source
    from edgetl.exporting.source import ExportSource
    from edgetl.runtime.metadata import ModelMetadata, Normalization

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255.0)(inputs))
    x = keras.layers.Lambda(lambda t: keras.ops.sin(t))(x)  # TFLite's SIN has a float kernel only
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    images = read_class_folders(outside_data / "images")
    labels = images.class_names
    examples = [Example(e.path, e.label) for e in images.examples]
    metadata = ModelMetadata(labels=labels, input_size=(32, 32), normalization=Normalization(mode="raw"))
    source = ExportSource(
        tmp_path, keras.Model(inputs, outputs), metadata, decode_subset(examples, 32), examples, labels
    )
    options = ExportOptions(calibration_samples=12, min_agreement=0.0, int8_fallback="none")
    (record,) = export_source(source, ["tflite-int8"], options)
    assert record.float_ops == {"SIN": 1} and record.int8_op_share < 1.0
    assert record.passed is False and "SIN x1 left in float" in record.problems[0]
    assert (tmp_path / record.path).is_file()
    # Where float islands are allowed (the default), the same file passes and still names what is in float.
    (record,) = export_source(source, ["tflite-int8"], replace(options, int8_fallback="float"))
    assert record.passed is True and record.problems == [] and record.float_ops == {"SIN": 1}


def test_an_outside_model_calibrated_on_its_verification_images_runs_keras_over_each_image_once(
    outside_data, tmp_path, monkeypatch
):
    """Calibrated and verified on one folder, an outside model's Keras predictions and bias correction's input sums
    come from one pass: no rung sums its sample again, and every file and figure is the one an export that runs
    Keras for each apart makes (the ONNX int8 graph to the byte)."""
    import onnx
    from onnx import numpy_helper

    import edgetl
    from edgetl.exporting.bias_correction import InputSums
    from edgetl.exporting.calibration import CalibrationImages

    path = tmp_path / "plain.keras"
    small_classifier(with_lambda=False, size=32).save(path)
    passes = []
    measure = InputSums._measure

    def recorded(self, model, calibration, count, batch_size, outputs=None):
        passes.append((count, outputs is not None))
        return measure(self, model, calibration, count, batch_size, outputs)

    monkeypatch.setattr(InputSums, "_measure", recorded)
    options = {
        "labels": outside_data / "labels.txt",
        "calibration": outside_data / "images",
        "normalization": "tf",
        "calibration_samples": 10,
        "min_agreement": 0.0,
    }
    formats = ["onnx-int8", "tflite-int8"]
    together = edgetl.export(path, formats, out=tmp_path / "together", **options)
    assert passes == [(10, True), (27, True)]  # the first sample and the largest (all 27), with the predictions
    passes.clear()
    monkeypatch.setattr(CalibrationImages, "positions_in", lambda self, subset, count: None)
    apart = edgetl.export(path, formats, out=tmp_path / "apart", **options)
    assert passes and not any(with_outputs for _, with_outputs in passes)
    for ours, theirs in zip(together.records, apart.records, strict=True):
        assert (ours.format, ours.recipe, ours.agreement, ours.mean_probability_diff) == (
            theirs.format,
            theirs.recipe,
            theirs.agreement,
            theirs.mean_probability_diff,
        )
        assert [attempt["agreement"] for attempt in ours.attempts] == [a["agreement"] for a in theirs.attempts]
    graphs = [onnx.load(str(tmp_path / run / "exports" / "model_int8.onnx")).graph for run in ("together", "apart")]
    # The same graph but for the names Keras gave the second model (functional_1_1 after functional_1).
    assert [node.op_type for node in graphs[0].node] == [node.op_type for node in graphs[1].node]
    ours, theirs = ([numpy_helper.to_array(init) for init in graph.initializer] for graph in graphs)
    assert len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
