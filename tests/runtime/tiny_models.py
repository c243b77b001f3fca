"""Tiny model files built in a few milliseconds, without TensorFlow: mean colour -> softmax over three classes.

Their input is (1, size, size, 3) pixels and their output (1, 3) probabilities, so a red picture is "red". The
hostile-input tests wrap them in metadata of their own making.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from edgetl.runtime.metadata import METADATA_KEY, ModelMetadata, Normalization

COLOURS = ["red", "green", "blue"]


def metadata(labels: list[str] = COLOURS, size: int = 8) -> ModelMetadata:
    return ModelMetadata(labels=list(labels), input_size=(size, size), normalization=Normalization(mode="raw"))


def tflite_flatbuffer(size: int = 8, dtype: str = "FLOAT32") -> bytes:
    """`dtype` (a TFLite TensorType name) is the type of the pixels, the mean and the probabilities."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    data_type = getattr(schema.TensorType, dtype)

    def tensor(shape, buffer, name, dtype=data_type):
        made = schema.TensorT()
        made.shape, made.type, made.buffer, made.name = list(shape), dtype, buffer, name
        return made

    empty, axes = schema.BufferT(), schema.BufferT()
    axes.data = np.array([1, 2], np.int32).tobytes()
    graph = schema.SubGraphT()
    graph.tensors = [
        tensor((1, size, size, 3), 0, "pixels"),
        tensor((2,), 2, "axes", schema.TensorType.INT32),
        tensor((1, 3), 0, "mean"),
        tensor((1, 3), 0, "probabilities"),
    ]
    graph.inputs, graph.outputs = [0], [3]
    mean, softmax = schema.OperatorT(), schema.OperatorT()
    mean.opcodeIndex, mean.inputs, mean.outputs = 0, [0, 1], [2]
    mean.builtinOptionsType, mean.builtinOptions = schema.BuiltinOptions.ReducerOptions, schema.ReducerOptionsT()
    softmax.opcodeIndex, softmax.inputs, softmax.outputs = 1, [2], [3]
    softmax.builtinOptionsType, softmax.builtinOptions = schema.BuiltinOptions.SoftmaxOptions, schema.SoftmaxOptionsT()
    softmax.builtinOptions.beta = 1.0
    graph.operators = [mean, softmax]
    codes = []
    for operator in (schema.BuiltinOperator.MEAN, schema.BuiltinOperator.SOFTMAX):
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = operator
        code.version = 1
        codes.append(code)
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, codes, [graph], [empty, empty, axes]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflite_with(metadata_json: bytes | str, size: int = 8, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """The tiny TFLite model carrying `metadata_json` as its edgetl.json, whatever it holds."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression) as bundle:
        bundle.writestr(METADATA_KEY, metadata_json)
    return tflite_flatbuffer(size) + archive.getvalue()


def onnx_with(metadata_json: str | None, size: int = 8) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[1, 2], keepdims=0),
            helper.make_node("Softmax", ["mean"], ["probabilities"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if metadata_json is not None:
        onnx.helper.set_model_props(model, {METADATA_KEY: metadata_json})
    return model.SerializeToString()
