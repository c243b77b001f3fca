"""TFLite conversion (float32, float16, dynamic-range, full-integer int8) and what a converted file really holds."""

from __future__ import annotations

import contextlib
import copy
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edgetl.errors import EdgetlError
from edgetl.exporting.activation_ranges import Measurement, tflite_measurement, with_ranges, write_range
from edgetl.exporting.converter_exports import exported_once
from edgetl.exporting.formats import QUANTIZERS
from edgetl.exporting.int8 import CALIBRATION_PERCENTILE, IO_TYPES
from edgetl.exporting.memory import collect_garbage, hand_back_freed

# Every exported model takes raw pixels: the int8 file's input range is pinned to them, so its input quantisation
# is exact (uint8: scale 1, zero point 0; int8: scale 1, zero point -128) whatever the calibration images held.
RAW_PIXEL_RANGE = (0.0, 255.0)
# Ops that only convert (float or uint8 <-> int8 at the edges, float16 weights to float32): not fallbacks.
BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
# How the converter's int8 may be calibrated: percentile (exporting/activation_ranges.py) or its own min-max.
CALIBRATION_METHODS = QUANTIZERS["converter"].calibration_methods


def _converter(model):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model)


@contextlib.contextmanager
def _saved_model_not_loaded_back():
    """The converter saves a Keras model as a SavedModel in a temporary folder, converts that, and loads it back
    into Python as well (tf.saved_model.load: every weight restored, every function registered with TensorFlow's
    runtime), only to read its GraphDebugInfo for the source locations of its error messages. Much of what that
    load makes outlives the conversion, so each conversion of a large model leaves the process bigger (figures:
    docs/benchmarks.md, export cost's fifth round; tensorflow#122598). While this is active the GraphDebugInfo is
    read from the SavedModel's folder instead, as TensorFlow's own fix does (tensorflow#123818): the same file."""
    from tensorflow.lite.python import lite
    from tensorflow.python.saved_model.loader_impl import parse_saved_model_with_debug_info

    load = getattr(lite, "_load", None)
    if load is None:  # a TensorFlow that no longer loads the SavedModel back
        yield
        return

    class DebugInfoOnly:
        def __init__(self, saved_model_dir: str) -> None:
            self.graph_debug_info = parse_saved_model_with_debug_info(saved_model_dir)[1]

    lite._load = lambda saved_model_dir, *args, **kwargs: DebugInfoOnly(saved_model_dir)
    try:
        yield
    finally:
        lite._load = load


def _convert(converter) -> bytes:
    """What `converter` makes. A converter leaves its graphs in reference cycles, hundreds of MB for a large model:
    they are collected as soon as it is done, wherever the conversion is (the ladder's ranking converts inside one
    step), and a converter passed as the only reference to it goes with them."""
    with _saved_model_not_loaded_back(), exported_once():
        converted = converter.convert()
    del converter
    collect_garbage()
    return converted


def convert_float32(model) -> bytes:
    return _convert(_converter(model))


def convert_float16(model) -> bytes:
    """float16 weights, float32 computation and input/output: half the size, no calibration."""
    import tensorflow as tf

    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return _convert(converter)


def convert_dynamic(model) -> bytes:
    """Dynamic-range quantisation: int8 weights, activations quantised on the fly, float input/output."""
    import tensorflow as tf

    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return _convert(converter)


def _calibrating_converter(model, calibration_pixels):
    """The converter's first step alone: its float graph with a min/max slot per activation, calibrated on
    `calibration_pixels` (its own two steps, so that a denylist can be given to the second)."""
    import tensorflow as tf

    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for image in calibration_pixels:
            yield [image[np.newaxis].astype(np.float32)]

    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter._experimental_calibrate_only = True
    return converter


class TfliteCalibration:
    """A Keras model as the converter's int8 starts from it: the converter's calibrate-only output (its float graph
    with a min/max slot per activation; one image fills them, the input pinned to raw pixels), whose slots edgetl
    fills from a Measurement of the calibration images (exporting/activation_ranges.py). `measurement`, when
    given, is the one an earlier conversion of the same model made (tensor names repeat across conversions), so
    the ladder's rungs measure once; else this graph is measured, sized for up to `most_images` images."""

    def __init__(
        self, model, sample, measurement: Measurement | None = None, most_images: int = 0, corrections=None
    ) -> None:
        from edgetl.exporting.bias_correction import bias_holders, folded_biases
        from edgetl.exporting.calibration import as_sample

        self.sample = as_sample(sample)
        self.corrections = corrections or {}  # the bias corrections `model` carries (bias_correction.Correction)
        # What each convolution's folded bias holds in the float graph (bias_correction.folded_biases), by which
        # `rebiased` tells apart the convolutions whose names alone do not tell.
        self.biases = folded_biases(model, bias_holders(model))
        # The conversion is not kept beside its pinned copy: held to the end of this call, it would count in the
        # measurement's peak (90 MB on an Xception at 299 px).
        self.float_model = _pin_input_range(_convert(_calibrating_converter(model, self.sample[:1])), RAW_PIXEL_RANGE)
        self.measurement = measurement or tflite_measurement(
            self.float_model, max(most_images, len(self.sample)), CALIBRATION_PERCENTILE
        )

    def calibrated(self, method: str = CALIBRATION_METHODS[0]) -> bytes:
        """The float graph with `method`'s activation ranges over the sample, ready to quantise."""
        if method not in CALIBRATION_METHODS:
            raise EdgetlError(f"TFLite calibration method {method!r}: unknown; one of {', '.join(CALIBRATION_METHODS)}")
        return with_ranges(self.float_model, self.measurement.over(self.sample).ranges(method))

    def rebiased(self, corrections: dict, sample) -> TfliteCalibration | None:
        """This graph as the converter would make it of the same model with `corrections` instead of its own,
        measured on `sample`: bias correction only subtracts a shift from the bias the converter folds into each
        corrected convolution, so the difference is written into those biases. None where a convolution's
        folded bias cannot be found for certain (then the model is converted again)."""
        from edgetl.exporting.calibration import as_sample

        float_model = _rebias(self.float_model, self.corrections, corrections, self.biases)
        if float_model is None:
            return None
        rebiased = copy.copy(self)
        rebiased.float_model, rebiased.corrections, rebiased.sample = float_model, corrections, as_sample(sample)
        rebiased.biases = {
            layer: [value + _moved(self.corrections.get(layer), corrections.get(layer)) for value in values]
            for layer, values in self.biases.items()
        }
        return rebiased

    def quantize(self, method: str, io_type: str = IO_TYPES[0], float_layers: tuple[str, ...] = ()) -> bytes:
        """int8 by `method`, with `io_type` input and output, `float_layers` kept in float."""
        if io_type not in IO_TYPES:
            raise EdgetlError(f"--io-type {io_type}: unknown; choose one of {', '.join(IO_TYPES)}")
        return _quantize(self.calibrated(method), io_type, float_layers)


# The ops bias correction corrects, by their builtin code in the TFLite schema.
CONVOLUTION_OPS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 4}
FLOAT32_TENSOR = 0  # TensorType.FLOAT32


def _moved(carried, wanted) -> np.ndarray | float:
    """What a convolution's folded bias moves by when its correction `carried` (a bias_correction.Correction, or
    None) is given back and `wanted` taken instead."""
    return (carried.shift if carried is not None else 0.0) - (wanted.shift if wanted is not None else 0.0)


def _rebias(float_model: bytes, carried: dict, wanted: dict, biases: dict[str, list] | None = None) -> bytes | None:
    """`float_model` (carrying the bias corrections `carried`) with `wanted` instead: each corrected
    convolution's bias, found as the one convolution op whose output names both the convolution and the layer
    the correction was taken from (the BatchNormalization folded into it), gets back what `carried` took off and
    loses what `wanted` takes. Where names match several ops, the one whose bias holds one of the values `biases`
    gives the convolution (bias_correction.folded_biases of the model as `float_model` was made of it): Keras'
    automatic names repeat among traced ones (layer conv2d traces as conv2d_1, which is layer conv2d_1's name).
    None where that op or its float bias is not found so."""
    from tensorflow.lite.python import schema_py_generated as schema

    from edgetl.exporting.bias_correction import holds_bias

    buffer = bytearray(float_model)
    model = schema.Model.GetRootAs(buffer, 0)
    subgraph = model.Subgraphs(0)
    convolutions = []
    for index in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(index)
        code = model.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) in CONVOLUTION_OPS.values():
            convolutions.append((subgraph.Tensors(op.Outputs(0)).Name().decode(), op))

    def float_bias(op) -> np.ndarray | None:
        """The op's float32 bias, a view into `buffer`; None where it has none."""
        if op.InputsLength() < 3 or op.Inputs(2) < 0:
            return None
        bias = subgraph.Tensors(op.Inputs(2))
        data = model.Buffers(bias.Buffer())
        if bias.Type() != FLOAT32_TENSOR or data.DataLength() == 0 or data.DataLength() % 4:
            return None
        offset = data._tab.Vector(data._tab.Offset(4))
        return np.frombuffer(buffer, np.float32, count=data.DataLength() // 4, offset=offset)

    def holds_one_of(op, values: list) -> bool:
        bias = float_bias(op)
        return bias is not None and any(holds_bias(bias, value) for value in values)

    for layer in sorted(set(carried) | set(wanted)):
        before, after = carried.get(layer), wanted.get(layer)
        if before is not None and after is not None and np.array_equal(before.shift, after.shift):
            continue
        holder = (after or before).holder
        found = [op for name, op in convolutions if names_layer(name, layer) and names_layer(name, holder)]
        if len(found) > 1:
            found = [op for op in found if holds_one_of(op, (biases or {}).get(layer, []))]
        delta = _moved(before, after)
        values = float_bias(found[0]) if len(found) == 1 else None
        if values is None or values.size != np.size(delta):
            return None
        values += np.asarray(delta, np.float32)
    return bytes(buffer)


def _calibrated(model, calibration_pixels, method: str = CALIBRATION_METHODS[0]) -> bytes:
    """The float model with the activation ranges the calibration images give (by `method`), not yet quantised,
    its input range pinned to raw pixels."""
    return TfliteCalibration(model, calibration_pixels).calibrated(method)


def _pin_input_range(calibrated: bytes, value_range: tuple[float, float]) -> bytes:
    """Overwrite the calibrated min/max of the model's inputs in place (one value each, per tensor)."""
    from tensorflow.lite.python import schema_py_generated as schema

    buffer = bytearray(calibrated)
    subgraph = schema.Model.GetRootAs(buffer, 0).Subgraphs(0)
    for i in range(subgraph.InputsLength()):
        quantization = subgraph.Tensors(subgraph.Inputs(i)).Quantization()
        if quantization is None or quantization.MinLength() != 1 or quantization.MaxLength() != 1:
            raise EdgetlError("the calibrated TFLite model has no input range to pin; please report this")
        write_range(buffer, quantization, *value_range)
    return bytes(buffer)


def _quantize(calibrated: bytes, io_type: str, float_layers: tuple[str, ...]) -> bytes:
    """What the converter itself does after calibrating (`mlir_quantize`), with layers it may keep in float."""
    import tensorflow as tf

    try:
        from tensorflow.lite.python.convert import mlir_quantize
    except ImportError:  # private API: a TensorFlow without it cannot pin the input nor keep layers in float
        raise EdgetlError(
            "this TensorFlow's TFLite converter has no mlir_quantize: edgetl cannot quantise with it"
        ) from None
    # As the converter calls it: the edges get `io_type` (fully_quantize would force int8 edges).
    quantized = mlir_quantize(
        calibrated,
        input_data_type=getattr(tf, io_type),
        output_data_type=getattr(tf, io_type),
        denylisted_nodes=list(float_layers) or None,
    )
    # The quantiser leaves several times the model's size freed but still the process's (on the Xception at
    # 299 px, 170-360 MB), all of it in glibc's heap, none in Python cycles: the ranking quantises once a layer
    # it refines, and each verification follows.
    hand_back_freed()
    return quantized


def convert_int8(
    model,
    calibration_pixels,
    io_type: str = IO_TYPES[0],
    float_layers: tuple[str, ...] = (),
    method: str = CALIBRATION_METHODS[0],
) -> bytes:
    """int8 weights (per channel) and activations, calibrated by `method`; input and output of `io_type`;
    `float_layers` (output tensor names of the float graph's ops) stay in float. (The ladder keeps a
    TfliteCalibration instead, to quantise one measurement several ways.)

    The calibration pixels are raw 0-255 images (an array or an ImageSample), exactly what the model's input sees
    on a device. An op without an int8 kernel is left in float between DEQUANTIZE/QUANTIZE even when no layer is
    asked to be, so the exporter checks the written file's ops (tflite_op_report).
    """
    return TfliteCalibration(model, calibration_pixels).quantize(method, io_type, float_layers)


def names_layer(tensor_name: str, layer: str) -> bool:
    """Whether a converted op's tensor name (`;`-joined names of the fused ops, e.g. `.../block_1_expand_1/...`)
    comes from the Keras layer `layer`."""
    pattern = re.compile(rf"(^|/){re.escape(layer)}(_\d+)?/")
    return any(pattern.search(part) for part in tensor_name.split(";"))


# The ops whose weights int8 rounds, and so the layers the fallback may keep in float.
WEIGHTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})


def rank_int8_sensitivity(
    model, calibration_pixels: np.ndarray, io_type: str, method: str = CALIBRATION_METHODS[0]
) -> list[str]:
    """The weighted layers, most sensitive to int8 first (`rank_calibrated`), for `model` calibrated on
    `calibration_pixels`."""
    return rank_calibrated(TfliteCalibration(model, calibration_pixels), io_type, method)


def rank_calibrated(calibration: TfliteCalibration, io_type: str, method: str = CALIBRATION_METHODS[0]) -> list[str]:
    """The weighted layers, most sensitive to int8 first: by the error each adds itself in one debug run of the
    int8 graph on a few calibration images, the first few then by what keeping each alone in float does to the
    file's probabilities, the file made as its rung would make it, against the model uncorrected
    (exporting/sensitivity.py). Named as the float graph's op outputs, as `denylisted_nodes` takes them."""
    from edgetl.exporting.sensitivity import (
        SENSITIVITY_IMAGES,
        island_corrections,
        output_distance,
        rank_tflite_layers,
        refine,
    )

    images = calibration.sample.first(SENSITIVITY_IMAGES)  # read a batch at a time, as every pass reads them

    def as_corrected(corrections: dict) -> TfliteCalibration:
        """The calibration with `corrections` instead of its own; itself where that cannot be written exactly."""
        if corrections.keys() == calibration.corrections.keys():  # fewer corrections are a subset of its own
            return calibration
        return calibration.rebiased(corrections, calibration.sample) or calibration

    reference = _predict(as_corrected({}).calibrated(method), images)
    collect_garbage()  # the graphs and the run the reference took, before the ranking's debug model is made

    def distance(layer: str) -> float:
        island = as_corrected(island_corrections(calibration.corrections, layer)).calibrated(method)
        return output_distance(_predict(_quantize(island, io_type, (layer,)), images), reference)

    ranked = rank_tflite_layers(lambda: calibration.calibrated(method), images, io_type, WEIGHTED_OPS)
    return refine(ranked, distance)


def _interpreter(flatbuffer: bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    return Interpreter(
        model_content=flatbuffer, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )


def _predict(flatbuffer: bytes, images: np.ndarray) -> np.ndarray:
    """A flatbuffer run on `images` (verify.RUNTIME_BATCH at a time), its input and output (de)quantised as a
    device does."""
    from edgetl.exporting.verify import predict_in_batches
    from edgetl.runtime.litert import dequantize_output, quantize_input

    interpreter = _interpreter(flatbuffer)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.allocate_tensors()

    def predict(batch: np.ndarray) -> np.ndarray:
        if tuple(interpreter.get_input_details()[0]["shape"]) != batch.shape:
            interpreter.resize_tensor_input(index, list(batch.shape))
            interpreter.allocate_tensors()
        interpreter.set_tensor(index, quantize_input(batch, interpreter.get_input_details()[0]))
        interpreter.invoke()
        output = interpreter.get_output_details()[0]
        return dequantize_output(interpreter.get_tensor(output["index"]), output)

    return predict_in_batches(predict, images)


def _weighted_op_outputs(flatbuffer: bytes) -> list[str]:
    interpreter = _interpreter(flatbuffer)
    names = {detail["index"]: detail["name"] for detail in interpreter.get_tensor_details()}
    return [names[op["outputs"][0]] for op in interpreter._get_ops_details() if op["op_name"] in WEIGHTED_OPS]


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
