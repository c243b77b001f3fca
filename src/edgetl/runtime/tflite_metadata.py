"""The standard TFLite metadata, read without TensorFlow: the flatbuffer MediaPipe Tasks, the TFLite Task Library and
Android Studio's ML Model Binding read (schema metadata_schema.fbs, file identifier M001).

A .tflite file carries it as a model Buffer that a `Metadata` entry named TFLITE_METADATA points to; the files it
names (labels, edgetl.json) are in the zip archive appended to the flatbuffer. The field tables below mirror the two
schemas (field order = vtable slot order; a union field takes two slots, its type then its value); the export side
writes with the same tables, so each slot number is written down once.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from flatbuffers import number_types
from flatbuffers.table import Table

from edgetl.errors import ModelFileError
from edgetl.runtime.metadata import MAX_METADATA_BYTES, TFLITE_IDENTIFIER, ZIP_ERRORS

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"

# tensorflow/lite/schema/schema.fbs: only the tables on the way to the metadata buffer.
TFLITE_FIELDS = {
    "Model": (
        "version",
        "operator_codes",
        "subgraphs",
        "description",
        "buffers",
        "metadata_buffer",
        "metadata",
        "signature_defs",
    ),
    "Buffer": ("data", "offset", "size"),
    "Metadata": ("name", "buffer"),
}

# metadata_schema.fbs: the tables an image classifier's metadata uses.
METADATA_FIELDS = {
    "ModelMetadata": (
        "name",
        "description",
        "version",
        "subgraph_metadata",
        "author",
        "license",
        "associated_files",
        "min_parser_version",
    ),
    "SubGraphMetadata": (
        "name",
        "description",
        "input_tensor_metadata",
        "output_tensor_metadata",
        "associated_files",
        "input_process_units",
        "output_process_units",
        "input_tensor_groups",
        "output_tensor_groups",
        "custom_metadata",
    ),
    "TensorMetadata": (
        "name",
        "description",
        "dimension_names",
        "content",
        "process_units",
        "stats",
        "associated_files",
    ),
    "Content": ("content_properties_type", "content_properties", "range"),
    "FeatureProperties": (),
    "ImageProperties": ("color_space", "default_size"),
    "ProcessUnit": ("options_type", "options"),
    "NormalizationOptions": ("mean", "std"),
    "Stats": ("max", "min"),
    "AssociatedFile": ("name", "description", "type", "locale", "version"),
}

# Enum values in schema order (a union's 0 is NONE).
METADATA_ENUMS = {
    "AssociatedFileType": (
        "UNKNOWN",
        "DESCRIPTIONS",
        "TENSOR_AXIS_LABELS",
        "TENSOR_VALUE_LABELS",
        "TENSOR_AXIS_SCORE_CALIBRATION",
        "VOCABULARY",
        "SCANN_INDEX_FILE",
    ),
    "ColorSpaceType": ("UNKNOWN", "RGB", "GRAYSCALE"),
    "ContentProperties": ("NONE", "FeatureProperties", "ImageProperties", "BoundingBoxProperties", "AudioProperties"),
    "ProcessUnitOptions": (
        "NONE",
        "NormalizationOptions",
        "ScoreCalibrationOptions",
        "ScoreThresholdingOptions",
        "BertTokenizerOptions",
        "SentencePieceTokenizerOptions",
        "RegexTokenizerOptions",
    ),
}


@dataclass(frozen=True)
class AssociatedFile:
    name: str
    type: str  # an AssociatedFileType name, e.g. "TENSOR_AXIS_LABELS"
    description: str = ""


@dataclass(frozen=True)
class StandardMetadata:
    """What a .tflite file's standard metadata says about its first input and output."""

    name: str
    description: str
    version: str
    min_parser_version: str
    color_space: str  # "RGB", "GRAYSCALE", "UNKNOWN"; "" when the input has no ImageProperties
    mean: tuple[float, ...] | None  # NormalizationOptions of the input: (x - mean) / std, per channel or one value
    std: tuple[float, ...] | None
    input_min: tuple[float, ...] | None  # the input tensor's Stats
    input_max: tuple[float, ...] | None
    label_file: str | None  # the first TENSOR_AXIS_LABELS file of the first output
    labels: tuple[str, ...]
    associated_files: tuple[AssociatedFile, ...]  # every file named, at model, subgraph and tensor level


class _Damaged(Exception):
    """A field points outside the buffer or holds an impossible value."""


def _get(table: Table, flags, position: int):
    if position < 0 or position + flags.bytewidth > len(table.Bytes):
        raise _Damaged(f"offset {position} outside the {len(table.Bytes)}-byte buffer")
    return table.Get(flags, position)


def _table_at(buffer, position: int) -> Table:
    if not 0 <= position < len(buffer):
        raise _Damaged(f"table at {position} outside the {len(buffer)}-byte buffer")
    return Table(buffer, position)


def _root(buffer, identifier: bytes, what: str) -> Table:
    if len(buffer) < 8 or bytes(buffer[4:8]) != identifier:
        raise _Damaged(f"{what} has identifier {bytes(buffer[4:8])!r}, expected {identifier!r}")
    return _table_at(buffer, Table(buffer, 0).Get(number_types.UOffsetTFlags, 0))


def _field(table: Table, fields: tuple[str, ...], name: str) -> int | None:
    """The absolute position of a field's value, or None when the table leaves it out (its default)."""
    vtable = table.Pos - _get(table, number_types.SOffsetTFlags, table.Pos)
    entry = 4 + 2 * fields.index(name)
    if entry >= _get(table, number_types.VOffsetTFlags, vtable):
        return None
    relative = _get(table, number_types.VOffsetTFlags, vtable + entry)
    return table.Pos + relative if relative else None


def _scalar(table: Table, fields: tuple[str, ...], name: str, flags, default=0):
    position = _field(table, fields, name)
    return default if position is None else _get(table, flags, position)


def _indirect(table: Table, position: int) -> int:
    return position + _get(table, number_types.UOffsetTFlags, position)


def _subtable(table: Table, fields: tuple[str, ...], name: str) -> Table | None:
    position = _field(table, fields, name)
    return None if position is None else _table_at(table.Bytes, _indirect(table, position))


def _vector(table: Table, fields: tuple[str, ...], name: str, element_size: int) -> tuple[int, int] | None:
    """(start of the elements, count), bounds-checked, or None when absent."""
    position = _field(table, fields, name)
    if position is None:
        return None
    length_at = _indirect(table, position)
    count = _get(table, number_types.UOffsetTFlags, length_at)
    start = length_at + 4
    if start + count * element_size > len(table.Bytes):
        raise _Damaged(f"{name}: {count} elements run past the end of the buffer")
    return start, count


def _tables(table: Table, fields: tuple[str, ...], name: str) -> list[Table]:
    vector = _vector(table, fields, name, 4)
    if vector is None:
        return []
    start, count = vector
    return [_table_at(table.Bytes, _indirect(table, start + 4 * index)) for index in range(count)]


def _bytes(table: Table, fields: tuple[str, ...], name: str) -> bytes | None:
    vector = _vector(table, fields, name, 1)
    return None if vector is None else bytes(table.Bytes[vector[0] : vector[0] + vector[1]])


def _string(table: Table, fields: tuple[str, ...], name: str) -> str:
    raw = _bytes(table, fields, name)
    return "" if raw is None else raw.decode("utf-8")


def _floats(table: Table, fields: tuple[str, ...], name: str) -> tuple[float, ...] | None:
    vector = _vector(table, fields, name, 4)
    if vector is None:
        return None
    start, count = vector
    return tuple(_get(table, number_types.Float32Flags, start + 4 * index) for index in range(count))


def _enum(enum: str, value: int) -> str:
    names = METADATA_ENUMS[enum]
    if not 0 <= value < len(names):
        raise _Damaged(f"{enum} value {value} is not in the schema")
    return names[value]


def metadata_buffer(model: bytes) -> bytes | None:
    """The bytes of the TFLITE_METADATA buffer of a TFLite flatbuffer, or None when it has none.

    Raises _Damaged; `read_standard_metadata` turns that into a ModelFileError."""
    fields = TFLITE_FIELDS
    root = _root(model, TFLITE_IDENTIFIER, "the model")
    buffers = _tables(root, fields["Model"], "buffers")
    for entry in _tables(root, fields["Model"], "metadata"):
        if _string(entry, fields["Metadata"], "name") != METADATA_NAME:
            continue
        index = _scalar(entry, fields["Metadata"], "buffer", number_types.Uint32Flags)
        if index >= len(buffers):
            raise _Damaged(f"{METADATA_NAME} names buffer {index} of {len(buffers)}")
        buffer = buffers[index]
        data = _bytes(buffer, fields["Buffer"], "data")
        if data:
            return data
        # Models over 2 GB keep buffers after the flatbuffer: offset (from the start of the file) and size.
        offset = _scalar(buffer, fields["Buffer"], "offset", number_types.Uint64Flags)
        size = _scalar(buffer, fields["Buffer"], "size", number_types.Uint64Flags)
        if offset > 1 and offset + size <= len(model):
            return bytes(model[offset : offset + size])
        raise _Damaged(f"{METADATA_NAME} buffer {index} holds no data")
    return None


def _associated_files(table: Table, fields: tuple[str, ...]) -> list[AssociatedFile]:
    file_fields = METADATA_FIELDS["AssociatedFile"]
    return [
        AssociatedFile(
            name=_string(entry, file_fields, "name"),
            type=_enum("AssociatedFileType", _scalar(entry, file_fields, "type", number_types.Int8Flags)),
            description=_string(entry, file_fields, "description"),
        )
        for entry in _tables(table, fields, "associated_files")
    ]


def _union(table: Table, fields: tuple[str, ...], name: str, enum: str) -> tuple[str, Table | None]:
    kind = _enum(enum, _scalar(table, fields, f"{name}_type", number_types.Uint8Flags))
    return kind, _subtable(table, fields, name)


def _parse(metadata: bytes, archive_names: set[str], read_file) -> StandardMetadata:
    fields = METADATA_FIELDS
    root = _root(metadata, METADATA_IDENTIFIER, f"the {METADATA_NAME} buffer")
    files = _associated_files(root, fields["ModelMetadata"])
    inputs: list[Table] = []
    outputs: list[Table] = []
    for subgraph in _tables(root, fields["ModelMetadata"], "subgraph_metadata"):
        files += _associated_files(subgraph, fields["SubGraphMetadata"])
        subgraph_inputs = _tables(subgraph, fields["SubGraphMetadata"], "input_tensor_metadata")
        subgraph_outputs = _tables(subgraph, fields["SubGraphMetadata"], "output_tensor_metadata")
        for tensor in subgraph_inputs + subgraph_outputs:
            files += _associated_files(tensor, fields["TensorMetadata"])
        # The 0th subgraph is the main one.
        if not inputs and not outputs:
            inputs, outputs = subgraph_inputs, subgraph_outputs

    color_space, mean, std, input_min, input_max = "", None, None, None, None
    if inputs:
        image = inputs[0]
        content = _subtable(image, fields["TensorMetadata"], "content")
        if content is not None:
            kind, properties = _union(content, fields["Content"], "content_properties", "ContentProperties")
            if kind == "ImageProperties" and properties is not None:
                value = _scalar(properties, fields["ImageProperties"], "color_space", number_types.Int8Flags)
                color_space = _enum("ColorSpaceType", value)
        for unit in _tables(image, fields["TensorMetadata"], "process_units"):
            kind, options = _union(unit, fields["ProcessUnit"], "options", "ProcessUnitOptions")
            if kind == "NormalizationOptions" and options is not None:
                mean = _floats(options, fields["NormalizationOptions"], "mean")
                std = _floats(options, fields["NormalizationOptions"], "std")
                break
        stats = _subtable(image, fields["TensorMetadata"], "stats")
        if stats is not None:
            input_min = _floats(stats, fields["Stats"], "min")
            input_max = _floats(stats, fields["Stats"], "max")

    label_file, labels = None, ()
    if outputs:
        for candidate in _associated_files(outputs[0], fields["TensorMetadata"]):
            if candidate.type == "TENSOR_AXIS_LABELS":
                label_file = candidate.name
                break
    if label_file is not None:
        if label_file not in archive_names:
            raise _Damaged(f"the metadata names {label_file}, which the appended archive lacks")
        labels = tuple(read_file(label_file).decode("utf-8").splitlines())

    return StandardMetadata(
        name=_string(root, fields["ModelMetadata"], "name"),
        description=_string(root, fields["ModelMetadata"], "description"),
        version=_string(root, fields["ModelMetadata"], "version"),
        min_parser_version=_string(root, fields["ModelMetadata"], "min_parser_version"),
        color_space=color_space,
        mean=mean,
        std=std,
        input_min=input_min,
        input_max=input_max,
        label_file=label_file,
        labels=labels,
        associated_files=tuple(files),
    )


def read_standard_metadata(model: Path | str | bytes) -> StandardMetadata | None:
    """The standard TFLite metadata of a .tflite file (path or bytes), or None when it carries none.

    Raises ModelFileError, naming the file, when the file is unreadable or its metadata damaged."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        source, data = "TFLite model (bytes)", bytes(model)
    else:
        source = str(model)
        try:
            data = Path(model).read_bytes()
        except OSError as error:
            raise ModelFileError(f"{source}: cannot read the model ({error.strerror or error})") from None
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{source}: not a TFLite model (identifier {data[4:8]!r}, expected {TFLITE_IDENTIFIER!r})")
    try:
        metadata = metadata_buffer(data)
        if metadata is None:
            return None
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            return _parse(metadata, set(), None)
        with archive:
            return _parse(metadata, set(archive.namelist()), lambda name: _read_capped(archive, name))
    except (_Damaged, UnicodeDecodeError, *ZIP_ERRORS) as error:
        raise ModelFileError(f"{source}: the TFLite metadata is damaged ({error})") from None


def _read_capped(archive: zipfile.ZipFile, name: str) -> bytes:
    """A member of the appended archive (the labels file), under the cap every member edgetl inflates is held to:
    the size in its header may lie, so reading stops at the cap whatever the header says."""
    info = archive.getinfo(name)
    too_big = f"{name} would decompress to more than {MAX_METADATA_BYTES} bytes; refused"
    if info.file_size > MAX_METADATA_BYTES:
        raise _Damaged(too_big)
    with archive.open(info) as member:
        data = member.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise _Damaged(too_big)
    return data
