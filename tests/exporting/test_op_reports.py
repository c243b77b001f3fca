"""What a converted file computes in: the op reports of TFLite and ONNX files, on graphs built by hand (no
converter), and on the int8 file the shared fixture exports."""

import pytest

from edgetl.exporting.onnx import onnx_op_report
from edgetl.exporting.tflite import tflite_op_report
from tests.runtime.tiny_models import tflite_flatbuffer


@pytest.mark.parametrize(
    ("dtype", "int8_operators", "float_ops"),
    [("FLOAT32", 0, {"MEAN": 1, "SOFTMAX": 1}), ("INT8", 2, {})],
)
def test_tflite_ops_are_int8_when_none_of_their_tensors_is_float(tmp_path, dtype, int8_operators, float_ops):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tflite_flatbuffer(8, dtype))
    report = tflite_op_report(path)
    assert (report.operators, report.int8_operators, report.float_ops) == (2, int8_operators, float_ops)
    assert report.int8_share == int8_operators / 2


def qdq_graph():
    """pixels -> Q -> DQ -> Conv (int8 weights through a DQ, an int32 bias) -> Reshape -> Relu (float) -> Softmax,
    with a second Conv on float weights."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    initializers = [
        numpy_helper.from_array(np.ones((2, 3, 1, 1), np.int8), "w_int8"),
        numpy_helper.from_array(np.zeros(2, np.int32), "bias_int32"),
        numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w_float"),
        numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
        numpy_helper.from_array(np.array(0, np.int8), "zero"),
        numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["pixels", "scale", "zero"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["x"]),
        helper.make_node("DequantizeLinear", ["w_int8", "scale", "zero"], ["w"]),
        helper.make_node("Conv", ["x", "w", "bias_int32"], ["conv"]),
        helper.make_node("Conv", ["conv", "w_float"], ["conv_float"]),
        helper.make_node("Reshape", ["conv_float", "shape"], ["flat"]),
        helper.make_node("Relu", ["flat"], ["relu"]),
        helper.make_node("Softmax", ["relu"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 32])],
        initializers,
    )
    return helper.make_model(graph)


def test_onnx_ops_are_int8_when_every_float_input_comes_out_of_a_dequantize():
    report = onnx_op_report(qdq_graph())
    # Q, DQ and Reshape are neither int8 work nor fallbacks; the second Conv reads float weights.
    assert report.operators == 4 and report.int8_operators == 1
    assert report.float_ops == {"Conv": 1, "Relu": 1, "Softmax": 1}


@pytest.mark.slow
def test_the_exported_int8_tflite_file_computes_in_int8_only(exported_run):
    report = tflite_op_report(exported_run / "exports" / "model_int8.tflite")
    assert report.operators > 10 and report.int8_operators == report.operators and report.float_ops == {}
