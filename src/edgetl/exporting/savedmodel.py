"""A TensorFlow SavedModel for serving stacks (TF Serving, TF.js converters), written atomically as a directory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgetl.files import staged_folder
from edgetl.runtime.metadata import LABELS_FILE, METADATA_KEY, ModelMetadata

# TF Serving's place for files that travel with a SavedModel but are not part of the graph.
EXTRA_FILES_DIR = "assets.extra"


def write_savedmodel(model, destination: Path, metadata: ModelMetadata) -> None:
    """Export into a temporary sibling directory, then swap it in: a crash never leaves half a SavedModel,
    and an earlier SavedModel stays until the new one is complete."""
    with staged_folder(destination) as target:
        model.export(str(target), format="tf_saved_model", verbose=False)
        extra = target / EXTRA_FILES_DIR
        extra.mkdir(exist_ok=True)
        (extra / METADATA_KEY).write_text(metadata.to_json(), encoding="utf-8")
        (extra / LABELS_FILE).write_text("\n".join(metadata.labels) + "\n", encoding="utf-8")


def savedmodel_predictor(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Load the SavedModel with TensorFlow (not Keras) and call its `serve` endpoint, as a server would."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return lambda pixels: loaded.serve(tf.constant(pixels, dtype=tf.float32)).numpy()


def directory_digest(path: Path) -> tuple[int, str]:
    """Total size and a sha256 over every file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    size = 0
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        data = file.read_bytes()
        size += len(data)
        digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        digest.update(data)
    return size, digest.hexdigest()
