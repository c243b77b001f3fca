"""A small float ONNX classifier built with onnx.helper alone (no TensorFlow), shaped like a MobileNetV2 block:
raw NHWC pixels in, a 3x3 convolution, a depthwise convolution, a pointwise convolution (each followed by ReLU6),
global pooling, a dense layer and softmax out. Seeded weights; pointwise weights all positive, so that large
activations times large weights saturate onnxruntime's 16-bit pair sums on x86 without VNNI."""

from __future__ import annotations

import numpy as np

from edgetl.models.classifier import INPUT_NAME, OUTPUT_NAME

SIZE = 16
CLASSES = 4


def small_classifier(seed: int = 0):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {
        "stem_w": rng.normal(0, 0.02, (16, 3, 3, 3)),
        "stem_b": rng.normal(0, 0.1, 16),
        "dw_w": rng.normal(0, 0.5, (16, 1, 3, 3)),
        "dw_b": rng.normal(0, 0.1, 16),
        "pw_w": rng.uniform(0.05, 0.3, (32, 16, 1, 1)),
        "pw_b": rng.normal(-2.0, 0.1, 32),
        "fc_w": rng.normal(0, 0.5, (32, CLASSES)),
        "fc_b": np.zeros(CLASSES),
    }
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    initializers += [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in (("zero", 0.0), ("six", 6.0))]
    nodes = [
        helper.make_node("Transpose", [INPUT_NAME], ["nchw"], "to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "stem_w", "stem_b"], ["stem"], "stem", pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["stem", "zero", "six"], ["stem_relu"], "stem_relu"),
        helper.make_node("Conv", ["stem_relu", "dw_w", "dw_b"], ["dw"], "dw", pads=[1, 1, 1, 1], group=16),
        helper.make_node("Clip", ["dw", "zero", "six"], ["dw_relu"], "dw_relu"),
        helper.make_node("Conv", ["dw_relu", "pw_w", "pw_b"], ["pw"], "pw"),
        helper.make_node("Clip", ["pw", "zero", "six"], ["pw_relu"], "pw_relu"),
        helper.make_node("GlobalAveragePool", ["pw_relu"], ["pooled"], "pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], "flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], "fc"),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], "softmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", CLASSES])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def pixels(count: int, seed: int = 1) -> np.ndarray:
    """Raw 0-255 pixels, bright and varied, as calibration and verification images."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (count, SIZE, SIZE, 3)).astype(np.float32)
