"""TFLite conversion (float32, float16, dynamic-range, full-integer int8) and what a converted file really holds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edgetl.errors import EdgetlError

IO_TYPES = ("int8", "uint8", "float32")
# Ops that only convert (float or uint8 <-> int8 at the edges, float16 weights to float32): not fallbacks.
BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


def _converter(model):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model)


def convert_float32(model) -> bytes:
    return _converter(model).convert()


def convert_float16(model) -> bytes:
    """float16 weights, float32 computation and input/output: half the size, no calibration."""
    import tensorflow as tf

    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def convert_dynamic(model) -> bytes:
    """Dynamic-range quantisation: int8 weights, activations quantised on the fly, float input/output."""
    import tensorflow as tf

    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def convert_int8(model, calibration_pixels: np.ndarray, io_type: str = "int8") -> bytes:
    """int8 weights (per channel) and activations; input and output of `io_type`.

    The calibration pixels are raw 0-255 images, exactly what the model's input sees on a device; the input's
    quantisation parameters then map pixels to int8 nearly losslessly (scale ~1, zero point -128).
    """
    import tensorflow as tf

    if io_type not in IO_TYPES:
        raise EdgetlError(f"--io-type {io_type}: unknown; choose one of {', '.join(IO_TYPES)}")

    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for image in calibration_pixels:
            yield [image[np.newaxis].astype(np.float32)]

    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    # Integer kernels only (Keras' own exporter adds SELECT_TF_OPS, wrong for an int8 edge target). This alone
    # does not guarantee an integer-only file: an op without an int8 kernel is still left in float between
    # DEQUANTIZE/QUANTIZE, so the exporter checks the written file's ops (tflite_op_report).
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = getattr(tf, io_type)
    converter.inference_output_type = getattr(tf, io_type)
    return converter.convert()


@dataclass(frozen=True)
class OpReport:
    """What a model file computes in: share of operators whose tensors are all integer, and the rest by name."""

    operators: int
    int8_operators: int
    float_ops: dict[str, int] = field(default_factory=dict)  # op name -> count, computing in float

    @property
    def int8_share(self) -> float:
        return self.int8_operators / self.operators if self.operators else 0.0


def tflite_op_report(path) -> OpReport | None:
    """Classify every op of a .tflite file by the dtypes of its input and output tensors.

    An op counts as int8 when none of its tensors is floating point (int32 biases are integer arithmetic).
    QUANTIZE/DEQUANTIZE only convert (at the edges, or float16 weights) and are left out of the count.
    The file is opened without the default XNNPACK delegate, which would hide the ops inside DELEGATE nodes.
    Returns None when LiteRT is missing or does not list ops (`_get_ops_details` is private).
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        return None
    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    try:
        ops = interpreter._get_ops_details()
    except AttributeError:
        return None
    dtypes = {detail["index"]: np.dtype(detail["dtype"]) for detail in interpreter.get_tensor_details()}
    operators = 0
    int8_ops = 0
    float_ops: Counter[str] = Counter()
    for op in ops:
        if op["op_name"] in BOUNDARY_OPS:
            continue
        operators += 1
        tensors = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        if any(np.issubdtype(dtypes.get(i, np.dtype(np.float32)), np.floating) for i in tensors):
            float_ops[op["op_name"]] += 1
        else:
            int8_ops += 1
    return OpReport(operators, int8_ops, dict(sorted(float_ops.items())))
