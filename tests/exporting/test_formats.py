"""The formats beyond float32/int8/ONNX: float16, dynamic range, int8 with uint8 I/O, ONNX int8, SavedModel."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import records

pytestmark = pytest.mark.slow


def test_every_format_is_written_and_verified(all_formats_run, exported_run):
    index = records(all_formats_run)
    assert set(index) == {
        "tflite-float16",
        "tflite-dynamic",
        "tflite-int8",
        "onnx-int8",
        "savedmodel",
    }
    names = {
        "tflite-float16": "exports/model_float16.tflite",
        "tflite-dynamic": "exports/model_dynamic.tflite",
        "tflite-int8": "exports/model_int8.tflite",
        "onnx-int8": "exports/model_int8.onnx",
        "savedmodel": "exports/saved_model",
    }
    for name, path in names.items():
        assert index[name]["path"] == path
        assert (all_formats_run / path).exists()
    float32 = records(exported_run)["tflite-float32"]["size_bytes"]  # the same model, exported by the shared fixture
    assert index["tflite-float16"]["size_bytes"] < 0.6 * float32
    assert index["tflite-dynamic"]["size_bytes"] < 0.45 * float32
    for name in ("tflite-float16", "tflite-dynamic", "savedmodel"):
        assert index[name]["input_dtype"] == "float32" and index[name]["output_dtype"] == "float32"
    assert index["tflite-float16"]["max_probability_diff"] < 0.01
    assert index["savedmodel"]["max_probability_diff"] < 1e-4 and index["savedmodel"]["agreement"] == 1.0
    assert index["tflite-int8"]["calibration_images"] == 30 and index["onnx-int8"]["calibration_images"] == 30
    assert index["tflite-int8"]["quantizer"] == "converter" and index["onnx-int8"]["quantizer"] == "onnxruntime"


def test_int8_io_type_gives_an_int8_file_that_answers_like_the_uint8_one(all_formats_run, exported_run):
    from ai_edge_litert.interpreter import Interpreter

    from edgetl.runtime.engine import open_engine
    from edgetl.runtime.image import load_images

    path = all_formats_run / "exports" / "model_int8.tflite"
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (pixels_in,) = interpreter.get_input_details()
    (probabilities_out,) = interpreter.get_output_details()
    assert pixels_in["dtype"] == np.int8 and probabilities_out["dtype"] == np.int8
    # The input range is pinned to raw pixels whatever calibration saw: pixel p is exactly p - 128.
    assert pixels_in["quantization_parameters"]["zero_points"][0] == -128
    assert pixels_in["quantization_parameters"]["scales"][0] == 1.0
    record = records(all_formats_run)["tflite-int8"]
    assert record["input_dtype"] == "int8" and record["output_dtype"] == "int8"
    # MediaPipe refuses int8 input: the record says so.
    assert record["runtimes"] == ["LiteRT"] and records(all_formats_run)["onnx-int8"]["runtimes"] == ["onnxruntime"]
    # Inside, everything but the edge conversions is int8: the op report says so.
    assert record["int8_op_share"] == 1.0 and record["float_ops"] == {} and record["operators"] > 50
    # The runtime quantises the pixels from the tensor's parameters: the uint8 and int8 files answer alike.
    split = json.loads((all_formats_run / "split.json").read_text())
    paths = [Path(split["root"]) / relative for relative, _ in split["test"]]
    images, _, _ = load_images(paths, (32, 32))
    as_int8 = open_engine(path).predict(images)
    as_uint8 = open_engine(exported_run / "exports" / "model_int8.tflite").predict(images)
    np.testing.assert_allclose(as_uint8.sum(axis=1), 1.0, atol=0.05)
    assert np.max(np.abs(as_uint8 - as_int8)) < 0.1


def test_float_formats_report_their_float_ops(all_formats_run):
    index = records(all_formats_run)
    for name in ("tflite-float16", "tflite-dynamic"):
        assert index[name]["int8_op_share"] == 0.0
        assert index[name]["float_ops"]["CONV_2D"] > 10  # MobileNetV2's convolutions, computed in float


def test_onnx_int8_is_a_per_channel_qdq_graph(all_formats_run):
    import onnx

    model = onnx.load(str(all_formats_run / "exports" / "model_int8.onnx"))
    (graph_input,) = model.graph.input
    (graph_output,) = model.graph.output
    assert graph_input.name == "pixels" and graph_output.name == "probabilities"
    assert graph_input.type.tensor_type.shape.dim[0].dim_param  # batch stays dynamic
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    initializers = {init.name: init for init in model.graph.initializer}
    conv_weight_scales = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            weight = initializers[node.input[0]]
            if weight.data_type == onnx.TensorProto.INT8 and len(weight.dims) == 4:
                conv_weight_scales.append(onnx.numpy_helper.to_array(initializers[node.input[1]]).size)
    assert conv_weight_scales and max(conv_weight_scales) > 1  # one scale per output channel
    record = records(all_formats_run)["onnx-int8"]
    assert record["input_dtype"] == "float32" and record["int8_op_share"] > 0.9
    assert {p.key for p in model.metadata_props} >= {"edgetl.json", "labels"}


def test_savedmodel_is_a_complete_directory_with_its_labels(all_formats_run):
    import tensorflow as tf

    directory = all_formats_run / "exports" / "saved_model"
    assert (directory / "saved_model.pb").is_file()
    carried = json.loads((directory / "assets.extra" / "edgetl.json").read_text())
    assert carried["labels"] == (all_formats_run / "labels.txt").read_text().split()
    assert carried["model_format"] == "savedmodel"
    assert not [p.name for p in (all_formats_run / "exports").iterdir() if p.name.startswith(".")]  # no temp left
    loaded = tf.saved_model.load(str(directory))  # kept in a name: its variables die with it
    served = loaded.serve(tf.zeros((2, 32, 32, 3))).numpy()
    assert served.shape == (2, 10)


def test_exports_json_per_class_figures_add_up(all_formats_run):
    labels = (all_formats_run / "labels.txt").read_text().split()
    test_labels = [label for _, label in json.loads((all_formats_run / "split.json").read_text())["test"]]
    per_class_count = {labels[i]: test_labels.count(i) for i in set(test_labels)}
    for record in records(all_formats_run).values():
        change = record["per_class_accuracy_change"]
        assert set(change) == set(per_class_count)
        weighted = sum(change[name] * per_class_count[name] for name in change) / record["images"]
        assert weighted == pytest.approx(record["top1"] - record["keras_top1"], abs=1e-6)
        assert len(record["flipped_files"]) == round((1 - record["agreement"]) * record["images"])
        assert [image["file"] for image in record["flipped_images"]] == record["flipped_files"]


def test_metadata_of_the_new_files_reads_without_tensorflow(all_formats_run):
    from tests.helpers import BLOCKER, run_python

    labels = (all_formats_run / "labels.txt").read_text().split()
    for filename in ("model_float16.tflite", "model_dynamic.tflite", "model_int8.tflite", "model_int8.onnx"):
        model = all_formats_run / "exports" / filename
        result = run_python(
            BLOCKER
            + f"""
import json
from edgetl.runtime.engine import open_engine
engine = open_engine({str(model)!r})
print(json.dumps({{"labels": engine.labels, "format": engine.metadata.model_format,
                  "size": list(engine.input_size)}}))
"""
        )
        assert result.returncode == 0, result.stderr
        carried = json.loads(result.stdout.strip().splitlines()[-1])
        assert carried["labels"] == labels and carried["size"] == [32, 32]
        assert carried["format"].startswith(("tflite", "onnx"))
