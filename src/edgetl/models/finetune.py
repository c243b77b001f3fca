"""Which layers train in each stage: stage 1 the head only, stage 2 the top of the backbone too.

BatchNormalization layers never train in stage 2: the backbone is called with training=False, so they normalise
with the pretrained statistics, and keeping their scale and offset frozen stops a small dataset from wrecking them.
"""

from __future__ import annotations

from edgetl.errors import EdgetlError
from edgetl.models.classifier import BACKBONE_LAYER_NAME


def first_unfrozen_index(layer_names: list[str], layers: int | None, from_layer: str | None) -> int:
    """Index of the first backbone layer that trains in stage 2 (0: the whole backbone)."""
    if layers is not None and from_layer is not None:
        raise EdgetlError("--fine-tune-layers and --fine-tune-from choose the same thing: pass only one")
    if from_layer is not None:
        if from_layer not in layer_names:
            tail = ", ".join(layer_names[-4:])
            raise EdgetlError(
                f"--fine-tune-from {from_layer}: no such layer in the backbone (its last layers are {tail})"
            )
        return layer_names.index(from_layer)
    if layers is not None:
        return max(0, len(layer_names) - layers)
    return 0


def unfreeze_top(model, layers: int | None = None, from_layer: str | None = None) -> list[str]:
    """Stage 2: the top of the backbone trains, BatchNorm excepted. Returns the names of the layers that train."""
    import keras

    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    names = [layer.name for layer in backbone.layers]
    start = first_unfrozen_index(names, layers, from_layer)
    backbone.trainable = True
    unfrozen: list[str] = []
    for index, layer in enumerate(backbone.layers):
        trains = index >= start and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trains
        if trains and layer.weights:
            unfrozen.append(layer.name)
    return unfrozen
