"""Putting `ModelMetadata` inside exported files (the reading side lives in edgetl.runtime.metadata)."""

from __future__ import annotations

import io
import zipfile

from edgetl.runtime.metadata import LABELS_FILE, METADATA_KEY, ModelMetadata


def attach_to_tflite(flatbuffer: bytes, metadata: ModelMetadata) -> bytes:
    """Append a zip of associated files (edgetl.json, labels.txt) to the flatbuffer, as TFLite Support does:
    interpreters read the flatbuffer and ignore what follows it."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(METADATA_KEY, metadata.to_json())
        bundle.writestr(LABELS_FILE, "\n".join(metadata.labels) + "\n")
    return flatbuffer + archive.getvalue()


def attach_to_onnx(model_proto, metadata: ModelMetadata) -> None:
    """Store the metadata in the graph's metadata_props, which onnxruntime returns as custom metadata."""
    entries = {METADATA_KEY: metadata.to_json(), "labels": ",".join(metadata.labels)}
    kept = [prop for prop in model_proto.metadata_props if prop.key not in entries]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(kept)
    for key, value in entries.items():
        prop = model_proto.metadata_props.add()
        prop.key = key
        prop.value = value
