"""Schemas of the files edgetl reads back: a run's config.json, split.json and exports.json, and bench JSON (from
this machine, a worker process or a board). Each is typed, with ranges and sizes, and checked when it is read; a
failure is one line naming the file and the field.

A run directory can be edited by hand, copied half-way or handed over by someone else, and a bench JSON comes from
another machine: none of it is trusted. The checks are pydantic models (strict types: "3" is no number, true is no
count); this module imports pydantic, so it is imported only by the functions that read these files.
"""

from __future__ import annotations

import functools
import json
from dataclasses import fields
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from edgetl.errors import ModelFileError
from edgetl.runtime.metadata import MAX_INPUT_SIDE

# The largest file of this kind that is parsed: a split of several million images fits; a file over it is refused
# before it is read, so a planted multi-gigabyte JSON never reaches the parser.
MAX_RUN_FILE_BYTES = 256 * 1024 * 1024
MAX_CLASSES = 100_000  # more class names than any classifier head edgetl trains
MAX_NAME_CHARS = 1_000  # a class name, a format name: one line of a table
MAX_PATH_CHARS = 4_096  # PATH_MAX on Linux
MAX_RECORDS = 1_000  # exports.json: one record per format; bench JSON: one row per format and setting
MAX_SHOWN_CHARS = 60  # of an offending value, in the one-line message

_STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"^[^\r\n]*$")]
PathText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH_CHARS)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]  # a share of images: accuracy, agreement
Milliseconds = Annotated[float, Field(ge=0.0)]
Count = Annotated[int, Field(ge=0, le=2**53)]  # exactly representable as JSON numbers in any reader


def read_json(path: Path, what: str) -> Any:
    """The JSON value in `path`, refused in one line naming the file when it is too big, not UTF-8, not JSON or
    nested too deeply."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_RUN_FILE_BYTES:
            raise ModelFileError(f"{path}: {size} bytes, over the {MAX_RUN_FILE_BYTES}-byte limit for {what}; refused")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a folder, not {what}") from None
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    return parse_json(data, str(path), what)


def parse_json(data: str | bytes, source: str, what: str) -> Any:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ModelFileError(f"{source}: {what} is damaged (not UTF-8 text: {error.reason})") from None
    try:
        return json.loads(data)
    except RecursionError:
        raise ModelFileError(f"{source}: {what} is damaged (JSON nested too deeply)") from None
    except ValueError as error:
        raise ModelFileError(f"{source}: {what} is damaged (not JSON: {error})") from None


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def _kind(value: Any) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _location(parts: tuple) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _described(loc: tuple, raw: Any, expected: dict[str, str]) -> tuple[str, Any, str] | None:
    """The longest field path at the start of `loc` that `expected` describes, its whole value in `raw`, and what
    it should hold: a field is then named whole (`input_size`, not `input_size[0]`)."""
    names = []
    for part in loc:
        if not isinstance(part, str):
            break
        names.append(part)
    for length in range(len(names), 0, -1):
        field = ".".join(names[:length])
        if field in expected:
            value = raw
            for name in names[:length]:
                value = value.get(name) if isinstance(value, dict) else None
            return field, value, expected[field]
    return None


def one_line(
    error: ValidationError, source: str, what: str, expected: dict[str, str] | None = None, raw: Any = None
) -> str:
    """The first problem pydantic found, as `FILE: WHAT field 'a.b[3]' is VALUE; MESSAGE`; with `expected` (field
    -> what it holds), a described field is named whole, with what it should hold."""
    first = error.errors(include_url=False)[0]
    more = error.error_count() - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:
        if first["type"] in ("model_type", "model_attributes_type", "dict_type"):
            return f"{source}: {what} is damaged (a JSON {_kind(first['input'])}, not an object)"
        return f"{source}: {what}: {message}{tail}"  # a check across fields names its field itself
    loc = first["loc"]
    # The files that are a list are checked as one field of a model: their fields are named '[3].path'.
    where = _location(loc[1:] if len(loc) > 1 and loc[0] in ("records", "rows") else loc)
    if loc in (("records",), ("rows",)):  # the whole list
        return f"{source}: {what} is {_shown(first['input'])}; {message[0].lower()}{message[1:]}{tail}"
    if first["type"] == "missing":
        return f"{source}: {what} lacks the field '{where}'{tail}"
    described = _described(loc, raw, expected or {})
    if described is not None:
        field, value, holds = described
        return f"{source}: {what} field '{field}' is {_shown(value)}; expected {holds}"
    return f"{source}: {what} field '{where}' is {_shown(first['input'])}; {message[0].lower()}{message[1:]}{tail}"


def validated(schema, raw: Any, source: str, what: str, expected: dict[str, str] | None = None):
    try:
        return schema.model_validate(raw)
    except ValidationError as error:
        raise ModelFileError(one_line(error, source, what, expected, raw)) from None
    except RecursionError:
        raise ModelFileError(f"{source}: {what} is damaged (JSON nested too deeply)") from None


# split.json -------------------------------------------------------------------------------------------------------

Label = Annotated[int, Strict(), Field(ge=0, lt=MAX_CLASSES)]
# A JSON list of [path, label]: the pair itself may be a list (JSON has no tuples), what is in it stays strict.
Example = Annotated[tuple[Annotated[PathText, Strict()], Label], Strict(False)]


class SplitFile(BaseModel):
    model_config = _STRICT

    root: PathText
    class_names: Annotated[list[Name], Field(min_length=1, max_length=MAX_CLASSES)]
    train: list[Example]
    validation: list[Example]
    test: list[Example]

    @field_validator("class_names")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            repeated = next(name for index, name in enumerate(names) if name in names[:index])
            raise ValueError(f"class name {_shown(repeated)} appears twice")
        return names

    @model_validator(mode="after")
    def _labels_name_classes(self) -> SplitFile:
        classes = len(self.class_names)
        for subset in ("train", "validation", "test"):
            for index, (_, label) in enumerate(getattr(self, subset)):
                if label >= classes:
                    raise ValueError(
                        f"field '{subset}[{index}][1]' is {label}; expected a class index from 0 to {classes - 1} "
                        f"({classes} class_names)"
                    )
        return self


def read_split_file(path: Path) -> SplitFile:
    return validated(SplitFile, read_json(path, "the split"), str(path), "the split")


# config.json: TrainConfig's own fields and types, with these ranges --------------------------------------------

FRACTION = Field(ge=0.0, lt=1.0)
POSITIVE_RATE = Field(gt=0.0, le=1e3)
STRENGTH = Field(ge=0.0, le=1.0)
TRAIN_RANGES = {
    "image_size": Field(ge=1, le=MAX_INPUT_SIDE),
    "epochs": Field(ge=0, le=1_000_000),
    "batch_size": Field(ge=1, le=1_000_000),
    "learning_rate": POSITIVE_RATE,
    "fine_tune_learning_rate": POSITIVE_RATE,
    "dropout": FRACTION,
    "hidden_units": Field(ge=0, le=1_000_000),
    "validation_fraction": FRACTION,
    "test_fraction": FRACTION,
    "patience": Field(ge=0, le=1_000_000),
    "fine_tune_epochs": Field(ge=0, le=1_000_000),
    "fine_tune_layers": Field(ge=1, le=1_000_000),
    "alpha": Field(gt=0.0, le=10.0),
    **{name: STRENGTH for name in ("rotation", "zoom", "translation", "brightness", "contrast")},
}


def _config_fields():
    """Every option config.json holds, flat: TrainConfig's own fields and those of the option objects it is
    composed of (config.TRAIN_PARTS), each with its class (for the type hints)."""
    from edgetl.config import TRAIN_PARTS, TrainConfig

    own = [(TrainConfig, item) for item in fields(TrainConfig) if item.name not in TRAIN_PARTS]
    return own + [(part, item) for part in TRAIN_PARTS.values() for item in fields(part)]


def _config_schema():
    """A pydantic model of TrainConfig's options, flat: their fields, types and defaults read from the dataclasses
    (the one place they are defined), with the ranges above."""
    import typing
    from dataclasses import MISSING

    definitions = {}
    for owner, item in _config_fields():
        annotation = typing.get_type_hints(owner)[item.name]
        if item.name in TRAIN_RANGES:
            annotation = Annotated[annotation, TRAIN_RANGES[item.name]]
        elif annotation is str:
            annotation = PathText if item.name in ("data_dir", "weights") else Name
        definitions[item.name] = (annotation, ... if item.default is MISSING else item.default)
    return create_model("TrainConfigFile", __config__=_STRICT, **definitions)


@functools.cache
def _config_model():
    return _config_schema()


def read_train_config(text: str | bytes, source: str):
    """The TrainConfig stored in a run's config.json (unknown keys, from a newer edgetl, are ignored). The option
    objects' fields are nested under their names (config.TRAIN_PARTS); runs written before held them flat."""
    from edgetl.config import TRAIN_PARTS, TrainConfig

    raw = parse_json(text, source, "the run config")
    if isinstance(raw, dict):  # the nested fields first, so that a field given flat as well wins
        flat = {}
        for name in TRAIN_PARTS:
            if isinstance(raw.get(name), dict):
                flat.update(raw[name])
        flat.update({key: value for key, value in raw.items() if key not in TRAIN_PARTS})
        raw = flat
    checked = validated(_config_model(), raw, source, "the run config")
    options = {item.name: getattr(checked, item.name) for _, item in _config_fields()}
    return TrainConfig.from_options(**options)


# exports.json -----------------------------------------------------------------------------------------------------

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class ExportEntry(BaseModel):
    """What every reader of a record relies on; the rest of the record is kept as it is."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")

    format: Name
    path: PathText
    size_bytes: Count
    sha256: Sha256
    passed: bool

    @field_validator("path")
    @classmethod
    def _inside_exports(cls, path: str) -> str:
        parts = PurePosixPath(path).parts
        if path.startswith("/") or "\\" in path or ".." in parts or len(parts) < 2 or parts[0] != "exports":
            raise ValueError("expected a path inside the run's exports/ folder, such as exports/model.onnx")
        return path


class ExportsFile(BaseModel):
    model_config = ConfigDict(strict=True)
    records: Annotated[list[ExportEntry], Field(max_length=MAX_RECORDS)]


def read_exports_file(path: Path) -> list[dict]:
    """The records of exports.json, each checked; a damaged file is refused, naming the record and field."""
    raw = read_json(path, "the exports index")
    checked = validated(ExportsFile, {"records": raw}, str(path), "the exports index")
    return [record.model_dump() for record in checked.records]


# bench JSON -------------------------------------------------------------------------------------------------------


class LatencyFields(BaseModel):
    model_config = _STRICT
    p50: Milliseconds
    p90: Milliseconds
    p99: Milliseconds
    mean: Milliseconds
    std: Milliseconds = 0.0
    runs: Count | None = None


class BenchRowFields(BaseModel):
    model_config = _STRICT

    format: Name
    path: PathText
    size_bytes: Count
    top1: Share
    top5: Share | None = None
    agreement: Share | None = None
    max_probability_diff: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    latency_ms: LatencyFields
    throughput_ips: Annotated[float, Field(ge=0.0)] | None = None
    batch: Annotated[int, Field(ge=1, le=2**31)] = 1
    runs: Count = 0
    threads: Annotated[int, Field(ge=1, le=2**31)] | None = None
    runtime: Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]
    provider: Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)] = ""
    device: Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)] = ""
    load_ms: Milliseconds = 0.0
    peak_rss_bytes: Count | None = None
    peak_rss_scope: Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)] = "process"
    images: Count = 0
    host: Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)] = ""
    harness_overhead_ms: Milliseconds = 0.0
    fingerprint: dict[str, Any] = Field(default_factory=dict)
    reference_top1: Share | None = None

    @field_validator("fingerprint")
    @classmethod
    def _small(cls, fingerprint: dict) -> dict:
        if len(json.dumps(fingerprint)) > MAX_PATH_CHARS * 16:
            raise ValueError("expected the small object of machine facts `edgetl bench` writes")
        return fingerprint


class BenchFile(BaseModel):
    model_config = ConfigDict(strict=True)
    rows: Annotated[list[BenchRowFields], Field(min_length=1, max_length=MAX_RECORDS)]


def bench_row_fields(raw: Any, source: str) -> BenchRowFields:
    return validated(BenchRowFields, raw, source, "the bench row")


def read_bench_rows(path: Path) -> list[BenchRowFields]:
    raw = read_json(path, "bench JSON")
    if not isinstance(raw, list):
        raise ModelFileError(f"{path}: expected the list of rows `edgetl bench --json` writes, not a JSON object")
    return validated(BenchFile, {"rows": raw}, str(path), "bench JSON").rows
