"""Putting `ModelMetadata` inside exported files (the reading side lives in edgetl.runtime.metadata and
edgetl.runtime.tflite_metadata)."""

from __future__ import annotations

import io
import zipfile

import flatbuffers
import numpy as np

from edgetl.errors import ModelFileError
from edgetl.runtime.metadata import LABELS_FILE, METADATA_KEY, TFLITE_IDENTIFIER, ModelMetadata
from edgetl.runtime.tflite_metadata import (
    METADATA_ENUMS,
    METADATA_FIELDS,
    METADATA_IDENTIFIER,
    METADATA_NAME,
    TFLITE_FIELDS,
)

# The "Added in:" versions of metadata_schema.fbs; every other table, field and enum value is in 1.0.0, the version
# the file identifier M001 stands for.
SCHEMA_ADDED_IN = {
    "AssociatedFileType.VOCABULARY": (1, 0, 1),
    "ProcessUnitOptions.BertTokenizerOptions": (1, 1, 0),
    "ProcessUnitOptions.SentencePieceTokenizerOptions": (1, 1, 0),
    "SubGraphMetadata.input_process_units": (1, 1, 0),
    "SubGraphMetadata.output_process_units": (1, 1, 0),
    "SubGraphMetadata.input_tensor_groups": (1, 2, 0),
    "SubGraphMetadata.output_tensor_groups": (1, 2, 0),
    "ProcessUnitOptions.RegexTokenizerOptions": (1, 2, 1),
    "ContentProperties.AudioProperties": (1, 3, 0),
    "AssociatedFileType.SCANN_INDEX_FILE": (1, 4, 0),
    "AssociatedFile.version": (1, 4, 1),
    "SubGraphMetadata.custom_metadata": (1, 5, 0),
}
BASE_PARSER_VERSION = (1, 0, 0)
# TFLite's schema gives Buffer.data `force_align: 16` (kernels read weights in place from the mapped file); the
# generated Python packer ignores it, so buffers are packed by hand.
BUFFER_ALIGNMENT = 16


def min_parser_version(used: set[str]) -> str:
    """The oldest metadata parser that understands every field and enum value in `used` ("Table.field",
    "Enum.VALUE"): the newest "Added in" among them, as the tflite_support populator computed it."""
    version = max((SCHEMA_ADDED_IN.get(feature, BASE_PARSER_VERSION) for feature in used), default=BASE_PARSER_VERSION)
    return ".".join(str(part) for part in version)


class _MetadataBuilder:
    """flatbuffers.Builder calls for metadata_schema.fbs tables; it records each field and enum value it writes
    so the minimum parser version follows from what was written."""

    def __init__(self):
        self.builder = flatbuffers.Builder(1024)
        self.used: set[str] = set()

    def string(self, text: str) -> int:
        return self.builder.CreateString(text)

    def floats(self, values: list[float]) -> int:
        self.builder.StartVector(4, len(values), 4)
        for value in reversed(values):
            self.builder.PrependFloat32(value)
        return self.builder.EndVector()

    def vector(self, tables: list[int]) -> int:
        self.builder.StartVector(4, len(tables), 4)
        for table in reversed(tables):
            self.builder.PrependUOffsetTRelative(table)
        return self.builder.EndVector()

    def enum(self, enum: str, value: str) -> int:
        self.used.add(f"{enum}.{value}")
        return METADATA_ENUMS[enum].index(value)

    def table(self, name: str, offsets: dict[str, int] | None = None, small: dict[str, int] | None = None) -> int:
        """A table from already-built strings, vectors and tables (`offsets`) and one-byte enums (`small`)."""
        fields = METADATA_FIELDS[name]
        self.builder.StartObject(len(fields))
        for field, offset in (offsets or {}).items():
            self.builder.PrependUOffsetTRelativeSlot(fields.index(field), offset, 0)
            self.used.add(f"{name}.{field}")
        for field, value in (small or {}).items():
            self.builder.PrependUint8Slot(fields.index(field), value, 0)
            self.used.add(f"{name}.{field}")
        return self.builder.EndObject()

    def associated_file(self, name: str, kind: str, description: str) -> int:
        offsets = {"name": self.string(name), "description": self.string(description)}
        return self.table("AssociatedFile", offsets, {"type": self.enum("AssociatedFileType", kind)})

    def union(self, field: str, enum: str, kind: str, table: int) -> tuple[dict[str, int], dict[str, int]]:
        return {field: table}, {f"{field}_type": self.enum(enum, kind)}


def _image_input(build: _MetadataBuilder, metadata: ModelMetadata, input_type: str) -> int:
    height, width = metadata.input_size
    image = build.table("ImageProperties", small={"color_space": build.enum("ColorSpaceType", "RGB")})
    content = build.table("Content", *build.union("content_properties", "ContentProperties", "ImageProperties", image))
    # The model takes raw pixels (its preprocessing is inside): the identity normalization is the true one. Integer
    # inputs get it too, as Model Maker writes them: the values of the float model they were quantized from.
    normalization = build.table("NormalizationOptions", {"mean": build.floats([0.0]), "std": build.floats([1.0])})
    unit = build.table(
        "ProcessUnit", *build.union("options", "ProcessUnitOptions", "NormalizationOptions", normalization)
    )
    offsets = {
        "name": build.string("image"),
        "description": build.string(
            f"RGB image, {width}x{height} pixels ({metadata.resize} resize), values 0-255; "
            f"the model normalizes them itself ({metadata.normalization.mode})."
        ),
        "content": content,
        "process_units": build.vector([unit]),
    }
    # Tensor values, as Model Maker states them for float32 and uint8 inputs (int8 holds shifted pixels).
    if input_type in ("float32", "uint8"):
        offsets["stats"] = build.table("Stats", {"max": build.floats([255.0]), "min": build.floats([0.0])})
    return build.table("TensorMetadata", offsets)


def _probabilities_output(build: _MetadataBuilder, metadata: ModelMetadata) -> int:
    labels = build.associated_file(LABELS_FILE, "TENSOR_AXIS_LABELS", "One label per output, in output order.")
    content = build.table(
        "Content",
        *build.union("content_properties", "ContentProperties", "FeatureProperties", build.table("FeatureProperties")),
    )
    description = f"Probabilities of the {len(metadata.labels)} classes of {LABELS_FILE}, in its order."
    offsets = {
        "name": build.string("probability"),
        "description": build.string(description),
        "content": content,
        "associated_files": build.vector([labels]),
    }
    return build.table("TensorMetadata", offsets)


def _feature(build: _MetadataBuilder, name: str) -> int:
    content = build.table(
        "Content",
        *build.union("content_properties", "ContentProperties", "FeatureProperties", build.table("FeatureProperties")),
    )
    return build.table("TensorMetadata", {"name": build.string(name), "content": content})


def standard_metadata(metadata: ModelMetadata, input_types: list[str], output_count: int) -> bytes:
    """The metadata_schema.fbs flatbuffer of an exported classifier whose inputs have `input_types` (numpy names):
    an RGB image in, probabilities with their labels out. Further inputs and outputs, if any, are plain features."""
    if not metadata.normalization.inside_model:
        raise ValueError("standard TFLite metadata is written for models that take raw pixels (inside_model)")
    build = _MetadataBuilder()
    inputs = [_image_input(build, metadata, input_types[0])]
    inputs += [_feature(build, f"input_{index}") for index in range(1, len(input_types))]
    outputs = [_probabilities_output(build, metadata)]
    outputs += [_feature(build, f"output_{index}") for index in range(1, output_count)]
    subgraph = build.table(
        "SubGraphMetadata",
        {"input_tensor_metadata": build.vector(inputs), "output_tensor_metadata": build.vector(outputs)},
    )
    record = build.associated_file(
        METADATA_KEY, "UNKNOWN", "edgetl's record of labels, input size and preprocessing (JSON)."
    )
    height, width = metadata.input_size
    name = f"{metadata.backbone} image classifier" if metadata.backbone else "image classifier"
    description = (
        f"Classifies an RGB image ({width}x{height}, raw pixels 0-255) into {len(metadata.labels)} classes; "
        f"exported by edgetl{f' as {metadata.model_format}' if metadata.model_format else ''}."
    )
    offsets = {
        "name": build.string(name),
        "description": build.string(description),
        "subgraph_metadata": build.vector([subgraph]),
        "associated_files": build.vector([record]),
    }
    # The ModelMetadata fields themselves are all 1.0.0: what the nested tables used decides.
    offsets["min_parser_version"] = build.string(min_parser_version(build.used))
    root = build.table("ModelMetadata", offsets)
    build.builder.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(build.builder.Output())


class _AlignedBuffer:
    """A TFLite Buffer packed with its data aligned to BUFFER_ALIGNMENT (packs in place of schema.BufferT)."""

    def __init__(self, data: bytes | None, offset: int = 0, size: int = 0):
        self.data, self.offset, self.size = data, offset, size

    def Pack(self, builder) -> int:  # noqa: N802 (the object API's name)
        fields = TFLITE_FIELDS["Buffer"]
        data = None
        if self.data is not None:
            # Pad so the bytes end, and therefore start, on the alignment (the finished buffer is a multiple of it).
            builder.Prep(BUFFER_ALIGNMENT, len(self.data))
            data = builder.CreateByteVector(self.data)
        builder.StartObject(len(fields))
        if data is not None:
            builder.PrependUOffsetTRelativeSlot(fields.index("data"), data, 0)
        builder.PrependUint64Slot(fields.index("offset"), self.offset, 0)
        builder.PrependUint64Slot(fields.index("size"), self.size, 0)
        return builder.EndObject()


def _tensor_types(model, schema) -> tuple[list[str], int]:
    """numpy names of the main subgraph's input types, and its number of outputs."""
    names = {value: key.lower() for key, value in vars(schema.TensorType).items() if key.isupper()}
    subgraph = model.subgraphs[0]
    return [names.get(subgraph.tensors[index].type, "other") for index in subgraph.inputs], len(subgraph.outputs)


def _with_metadata_buffer(flatbuffer: bytes, metadata: ModelMetadata) -> bytes:
    """The model re-packed (object API) with the standard metadata as a new buffer named TFLITE_METADATA; an
    existing one is replaced. Tensor, operator and buffer indices stay as they were."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    if any(buffer.offset > 1 for buffer in model.buffers or []):
        raise ModelFileError(
            "the converted model keeps its weights outside the flatbuffer (over 2 GB): "
            "edgetl cannot add TFLite metadata to it"
        )
    input_types, output_count = _tensor_types(model, schema)
    payload = standard_metadata(metadata, input_types, output_count)

    buffers = [
        _AlignedBuffer(None if buffer.data is None else np.asarray(buffer.data, np.uint8).tobytes())
        for buffer in model.buffers or []
    ]
    entries = [entry for entry in model.metadata or [] if entry.name not in (METADATA_NAME, METADATA_NAME.encode())]
    existing = [entry for entry in model.metadata or [] if entry not in entries]
    if existing:
        index = existing[0].buffer
        buffers[index] = _AlignedBuffer(payload)
    else:
        buffers.append(_AlignedBuffer(payload))
        index = len(buffers) - 1
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = index
    model.buffers = buffers
    model.metadata = entries + [entry]

    builder = flatbuffers.Builder(len(flatbuffer) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _append_associated_files(flatbuffer: bytes, metadata: ModelMetadata) -> bytes:
    """Append the zip of associated files after the final flatbuffer (interpreters ignore trailing bytes). Entries
    are stored, not deflated: MediaPipe maps them in place and rejects compressed ones."""
    model = io.BytesIO(flatbuffer)
    model.seek(0, io.SEEK_END)
    # Mode "a" on bytes that are not a zip appends one, with offsets counted from the start of the file.
    with zipfile.ZipFile(model, "a", zipfile.ZIP_STORED) as bundle:
        bundle.writestr(LABELS_FILE, "\n".join(metadata.labels) + "\n")
        bundle.writestr(METADATA_KEY, metadata.to_json())
    return model.getvalue()


def attach_to_tflite(flatbuffer: bytes, metadata: ModelMetadata) -> bytes:
    """The converted model with the standard TFLite metadata (what MediaPipe Tasks, the TFLite Task Library and
    Android Studio read) in a TFLITE_METADATA buffer, followed by the zip of the files it names: labels.txt and
    edgetl.json."""
    return _append_associated_files(_with_metadata_buffer(flatbuffer, metadata), metadata)


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
