"""The contract a model file meets before edgetl feeds it an image, whoever wrote it (edgetl or another tool).

One image input of rank 4 with positive sizes under the cap and a supported type (with its quantisation parameters
where it is quantised); at least one output, of rank 2 and a supported type; and, on every call, an output whose
real shape is one row of one score per label for each image. A file that breaks it is refused in one line naming
the file, before any buffer sized by what it declares is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgetl.errors import ModelFileError
from edgetl.runtime.metadata import MAX_INPUT_SIDE

# The pixel types edgetl feeds (float pixels, or quantised integers) and the score types it reads back.
INPUT_TYPES = ("float32", "uint8", "int8")
OUTPUT_TYPES = ("float32", "float16", "uint8", "int8")
QUANTIZED_TYPES = ("uint8", "int8")
# A classifier's scores per image: more than any head edgetl trains, far fewer than a segmentation map.
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class TensorSpec:
    """What a file declares of one tensor: its shape (None for a dimension left open), element type (numpy name) and
    quantisation (scales and zero points, empty when it has none)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()


def _side_ok(side: int | None) -> bool:
    return side is None or 1 <= side <= MAX_INPUT_SIDE


def check_model_contract(
    path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], channels_first: bool = False
) -> None:
    """Refuse a file whose tensors edgetl cannot feed or read; `channels_first` allows (batch, 3, height, width)
    inputs (PyTorch's ONNX files)."""
    if len(inputs) != 1:
        raise ModelFileError(
            f"{path}: takes {len(inputs)} inputs; edgetl feeds image classifiers one image input "
            f"(batch, height, width, 3)"
        )
    image = inputs[0]
    shape = image.shape
    if len(shape) != 4:
        raise ModelFileError(
            f"{path}: its input '{image.name}' has rank {len(shape)} ({_shown(shape)}); expected an image batch of "
            f"rank 4, (batch, height, width, 3)"
        )
    nchw = channels_first and shape[1] == 3 and shape[3] != 3
    sides = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
    channels = shape[1] if nchw else shape[3]
    if not all(_side_ok(side) for side in sides) or shape[0] == 0 or (channels is not None and channels != 3):
        raise ModelFileError(
            f"{path}: its input '{image.name}' is {_shown(shape)}; expected (batch, height, width, 3) with height "
            f"and width from 1 to {MAX_INPUT_SIDE} pixels"
        )
    if image.dtype not in INPUT_TYPES:
        raise ModelFileError(
            f"{path}: its input '{image.name}' is of type {image.dtype}; edgetl feeds {', '.join(INPUT_TYPES)} pixels"
        )
    _check_quantization(path, image, "input")
    if not outputs:
        raise ModelFileError(f"{path}: has no output; expected class scores, (batch, classes)")
    scores = outputs[0]
    classes = scores.shape[-1] if scores.shape else None
    if len(scores.shape) != 2 or scores.shape[0] == 0 or (classes is not None and not 1 <= classes <= MAX_CLASSES):
        raise ModelFileError(
            f"{path}: its output '{scores.name}' is {_shown(scores.shape)}; expected class scores, (batch, classes) "
            f"with 1 to {MAX_CLASSES} classes"
        )
    if scores.dtype not in OUTPUT_TYPES:
        raise ModelFileError(
            f"{path}: its output '{scores.name}' is of type {scores.dtype}; edgetl reads "
            f"{', '.join(OUTPUT_TYPES)} scores"
        )
    _check_quantization(path, scores, "output")


def _check_quantization(path: Path, tensor: TensorSpec, role: str) -> None:
    """A quantised tensor needs a positive, finite scale and a zero point in its type's range to be read or fed."""
    if tensor.dtype not in QUANTIZED_TYPES:
        return
    low, high = (0, 255) if tensor.dtype == "uint8" else (-128, 127)
    if (
        not tensor.scales
        or len(tensor.zero_points) != len(tensor.scales)
        or not all(math.isfinite(scale) and scale > 0 for scale in tensor.scales)
        or not all(low <= point <= high for point in tensor.zero_points)
    ):
        raise ModelFileError(
            f"{path}: its {tensor.dtype} {role} '{tensor.name}' has no usable quantisation parameters (scales "
            f"{_shown(tensor.scales)}, zero points {_shown(tensor.zero_points)}); the file is damaged or not fully "
            f"quantised"
        )


def check_scores(path: Path, scores, images: int, classes: int):
    """The output of one call, as the model really computed it: one row of `classes` scores per image."""
    if getattr(scores, "shape", None) != (images, classes):
        raise ModelFileError(
            f"{path}: gave scores of shape {_shown(getattr(scores, 'shape', None))} for {images} image(s); its "
            f"labels need [{images}, {classes}]: the file declares another output than it computes"
        )
    return scores


def one_line(error: BaseException) -> str:
    """A runtime's error, cut to the first line a one-line message can carry."""
    text = " ".join(str(error).split())
    return (text[:197] + "...") if len(text) > 200 else text or type(error).__name__


def _shown(values) -> str:
    text = str(list(values)) if isinstance(values, tuple | list) else str(values)
    return text if len(text) <= 60 else text[:57] + "..."


def tflite_specs(details: Sequence[dict]) -> list[TensorSpec]:
    """LiteRT's tensor details (its `quantization_parameters`, not the deprecated `quantization`)."""
    import numpy as np

    specs = []
    for detail in details:
        quantization = detail.get("quantization_parameters", {})
        specs.append(
            TensorSpec(
                name=str(detail.get("name", "")),
                shape=tuple(int(side) for side in detail["shape"]),
                dtype=np.dtype(detail["dtype"]).name,
                scales=tuple(float(s) for s in quantization.get("scales", ())),
                zero_points=tuple(int(z) for z in quantization.get("zero_points", ())),
            )
        )
    return specs


# onnxruntime's element type names -> numpy's
ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(string)": "str",
    "tensor(bool)": "bool",
}


def onnx_specs(nodes) -> list[TensorSpec]:
    """onnxruntime's NodeArgs; a dimension named or left open is None. A QDQ file's graph inputs are float: its
    quantisation lives inside the graph."""
    return [
        TensorSpec(
            name=node.name,
            shape=tuple(side if isinstance(side, int) and side >= 0 else None for side in (node.shape or [])),
            dtype=ONNX_TYPES.get(node.type, node.type),
        )
        for node in nodes
    ]


def check_onnx_session(path: Path, session) -> None:
    """The contract for an onnxruntime session; NCHW inputs are allowed (PyTorch's exports)."""
    check_model_contract(path, onnx_specs(session.get_inputs()), onnx_specs(session.get_outputs()), True)
