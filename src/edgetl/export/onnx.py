"""ONNX conversion through tf2onnx (dynamic batch, named input and output), and int8 through onnxruntime."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from edgetl.errors import MissingExtraError
from edgetl.export.tflite import OpReport
from edgetl.models.classifier import INPUT_NAME, OUTPUT_NAME

DEFAULT_OPSET = 17
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Ops that move or reshape data: quantising them gains nothing, so they are neither int8 work nor fallbacks.
LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Shape", "Identity", "Flatten", "Cast"})


def convert_onnx(model, opset: int = DEFAULT_OPSET):
    """The ONNX ModelProto (metadata is attached by the caller before it is serialised)."""
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError:
        raise MissingExtraError("tf2onnx", "train", "ONNX export") from None
    height, width = model.input_shape[1:3]
    signature = (tf.TensorSpec((None, height, width, 3), tf.float32, name=INPUT_NAME),)
    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    _name_output(model_proto)
    return model_proto


def _name_output(model_proto) -> None:
    """tf2onnx names the output after the Keras layer; a model from outside edgetl gets `probabilities` too."""
    (output,) = model_proto.graph.output
    if output.name == OUTPUT_NAME:
        return
    old = output.name
    for node in model_proto.graph.node:
        node.output[:] = [OUTPUT_NAME if name == old else name for name in node.output]
        node.input[:] = [OUTPUT_NAME if name == old else name for name in node.input]
    output.name = OUTPUT_NAME


def quantize_onnx_int8(float_model, calibration_pixels: np.ndarray):
    """Static int8 quantisation with onnxruntime: QDQ format, per-channel int8 weights, int8 activations
    calibrated (min/max) on the same training images as the TFLite int8 file."""
    import onnx

    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError:
        raise MissingExtraError("onnxruntime", "device", "ONNX int8 export") from None

    class PixelReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.images = iter(calibration_pixels)

        def get_next(self) -> dict | None:
            image = next(self.images, None)
            return None if image is None else {INPUT_NAME: image[np.newaxis].astype(np.float32)}

    with tempfile.TemporaryDirectory(prefix="edgetl-onnx-int8-") as work:
        source, quantized = Path(work) / "float.onnx", Path(work) / "int8.onnx"
        onnx.save(float_model, str(source))
        quantize_static(
            str(source),
            str(quantized),
            PixelReader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
        return onnx.load(str(quantized))


def onnx_op_report(model_proto) -> OpReport:
    """Which compute nodes of a QDQ graph run in int8: those whose float inputs all come out of a
    DequantizeLinear (onnxruntime fuses such a DQ -> op -> Q group into one integer kernel)."""
    dequantized = {out for node in model_proto.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    float_initializers = {init.name for init in model_proto.graph.initializer if init.data_type in (1, 10, 11, 16)}
    produced = {out for node in model_proto.graph.node for out in node.output}
    produced |= {graph_input.name for graph_input in model_proto.graph.input}
    operators = 0
    int8_operators = 0
    float_ops: Counter[str] = Counter()
    for node in model_proto.graph.node:
        if node.op_type in QDQ_OPS or node.op_type in LAYOUT_OPS:
            continue
        operators += 1
        # Inputs that are neither produced (by a node or as graph input) nor float weights are integer constants.
        data_inputs = [name for name in node.input if name and (name in produced or name in float_initializers)]
        if data_inputs and all(name in dequantized for name in data_inputs):
            int8_operators += 1
        else:
            float_ops[node.op_type] += 1
    return OpReport(operators, int8_operators, dict(sorted(float_ops.items())))
