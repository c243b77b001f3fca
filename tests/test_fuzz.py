"""Property-based fuzzing (issue 29): generated run-directory JSON, model files and flag values, checked against the
promise itself. Every command either succeeds or exits 1 or 2 with one `Error:` line and no traceback; nothing
outside the run is touched; exports.json never describes a file other than the one beside it.

Each fuzzer is held to a fixed number of examples and no deadline, so the whole module stays within its share of
`make test`; Hypothesis keeps the failing examples it finds in its database and tries them first next time.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from click.testing import CliRunner  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgetl.cli import main  # noqa: E402
from edgetl.errors import EdgetlError, ModelFileError  # noqa: E402
from tests.helpers import export_record  # noqa: E402

pytest.importorskip("ai_edge_litert")

# `make test` runs the same examples every time (a failure there is reproducible, never a coin toss); set
# EDGETL_FUZZ=explore to search afresh with many more examples, and add what it finds here as a case.
COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}
settings.register_profile("edgetl-ci", max_examples=60, derandomize=True, database=None, **COMMON)
settings.register_profile("edgetl-explore", max_examples=1000, **COMMON)
FUZZ = settings(settings.get_profile(f"edgetl-{os.environ.get('EDGETL_FUZZ', 'ci')}"))

# JSON as a hostile file holds it: any nesting of any value, NaN and infinity included (Python's json reads them).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


# Bounded memory, the promise's last part: no generated input may make edgetl allocate more than this above what
# the process had already needed (the peak resident size only grows, so a growth within one test is that test's).
MEMORY_GROWTH_LIMIT = 512 * 2**20


def peak_resident_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux counts in KiB


@pytest.fixture(autouse=True)
def memory_stays_bounded():
    before = peak_resident_bytes()
    yield
    grown = peak_resident_bytes() - before
    assert grown < MEMORY_GROWTH_LIMIT, f"the peak resident memory grew by {grown / 2**20:.0f} MiB in one fuzzer"


@pytest.fixture(autouse=True)
def pixel_budget_restored():
    """`edgetl --max-megapixels` changes the process's budget (and Pillow's own limit): put both back."""
    from PIL import Image

    from edgetl.runtime import image as image_module

    saved = image_module._max_pixels, Image.MAX_IMAGE_PIXELS
    yield
    image_module._max_pixels, Image.MAX_IMAGE_PIXELS = saved


def kept_promise(result, codes=(0, 1, 2)) -> list[str]:
    """The promise for one command: an expected exit code, no traceback, and on standard error nothing but one
    `Error:` line per failure (click's usage errors add their usage lines before theirs)."""
    assert result.exit_code in codes, (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.exit_code == 2:
        lines = [line for line in lines if not line.startswith(("Usage: ", "Try '"))]
    assert all(line.startswith("Error: ") for line in lines), result.stderr
    if result.exit_code != 0:
        assert lines or '"error"' in result.stdout, result.output  # --json puts per-image errors on stdout
    return lines


def snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() if path.is_file() and not path.is_symlink() else None
        for path in sorted(Path(folder).rglob("*"))
    }


# Run-directory JSON -----------------------------------------------------------------------------------------------


def good_documents() -> dict[str, object]:
    from dataclasses import asdict

    from edgetl.config import TrainConfig
    from tests.runtime.tiny_models import metadata

    return {
        "split.json": {
            "root": "/data",
            "class_names": ["red", "green", "blue"],
            "train": [["red/1.png", 0]],
            "validation": [["green/1.png", 1]],
            "test": [["blue/1.png", 2]],
        },
        "config.json": asdict(TrainConfig(data_dir="/data")),
        "exports.json": [
            {"format": "onnx", "path": "exports/model.onnx", "size_bytes": 3, "sha256": "a" * 64, "passed": True}
        ],
        "preprocessing.json": json.loads(metadata().to_json()),
    }


def mutated(document, paths_and_values) -> object:
    """`document` with the value at each generated place replaced (a place is a path of keys/indices)."""
    document = json.loads(json.dumps(document))
    for path, value in paths_and_values:
        target = document
        for step in path[:-1]:
            if isinstance(target, dict) and target:
                target = target[sorted(target)[step % len(target)]]
            elif isinstance(target, list) and target:
                target = target[step % len(target)]
            else:
                break
        else:
            if isinstance(target, dict) and target:
                target[sorted(target)[path[-1] % len(target)]] = value
            elif isinstance(target, list) and target:
                target[path[-1] % len(target)] = value
    return document


places = st.lists(st.tuples(st.lists(st.integers(0, 50), min_size=1, max_size=4), json_values), max_size=3)


def read_back(run: Path, name: str):
    from edgetl.run import RunDir, read_exports_index

    readers = {
        "split.json": lambda: RunDir(run).read_split(),
        "config.json": lambda: RunDir(run).read_config(),
        "exports.json": lambda: read_exports_index(run / "exports.json"),
        "preprocessing.json": lambda: RunDir(run).read_metadata(),
    }
    return readers[name]()


@FUZZ
@given(
    name=st.sampled_from(["split.json", "config.json", "exports.json", "preprocessing.json"]),
    changes=places,
    whole=st.none() | json_values,
    raw=st.none() | st.binary(max_size=64),
)
def test_run_files_read_back_are_checked(tmp_path_factory, name, changes, whole, raw):
    """Whatever a run's JSON file holds, reading it gives a checked value or one ModelFileError line naming the
    file; a split that reads back names only classes it has."""
    run = tmp_path_factory.mktemp("run")
    document = whole if whole is not None else mutated(good_documents()[name], changes)
    data = raw if raw is not None else json.dumps(document, allow_nan=True).encode()
    (run / name).write_bytes(data)
    try:
        value = read_back(run, name)
    except ModelFileError as error:
        message = str(error)
        assert message.startswith(str(run / name)) and "\n" not in message and len(message) < 400, message
        return
    if name == "split.json":
        classes = len(value.class_names)
        assert all(0 <= e.label < classes for subset in ("train", "validation", "test") for e in value.subset(subset))
    if name == "config.json":
        numbers = [v for v in vars(value).values() if isinstance(v, float)]
        assert all(math.isfinite(v) for v in numbers) and 1 <= value.image_size <= 4096
    if name == "exports.json":
        assert all(r["path"].startswith("exports/") and ".." not in r["path"].split("/") for r in value)


@FUZZ
@given(rows=st.lists(json_values, max_size=3) | json_values, changes=places)
def test_bench_json_from_anywhere_keeps_the_promise(tmp_path_factory, rows, changes):
    """`edgetl bench compare` on a generated or mutated bench JSON: a table, or one line naming the file."""
    from tests.test_hostile_invariants import bench_row

    folder = tmp_path_factory.mktemp("bench")
    path = folder / "board.json"
    document = mutated([bench_row(), bench_row(threads=2)], changes) if changes else rows
    path.write_text(json.dumps(document, allow_nan=True))
    before = snapshot(folder)
    result = CliRunner().invoke(main, ["bench", "compare", str(path)])
    errors = kept_promise(result, (0, 1))
    if result.exit_code == 1 and errors:
        assert len(errors) == 1 and errors[0].startswith(f"Error: {path}"), errors
    assert snapshot(folder) == before


# Model files ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, Path]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    red, blue = folder / "red.png", folder / "blue.png"
    Image.new("RGB", (8, 8), (250, 0, 0)).save(red)
    Image.new("RGB", (8, 8), (0, 0, 250)).save(blue)
    return red, blue


def tensor_mutation(data):
    """A flatbuffer change drawn by Hypothesis: one tensor's shape, type or quantisation, or the graph's outputs."""
    choice = data.draw(st.integers(0, 3))
    tensor_index = data.draw(st.integers(0, 3))
    shape = data.draw(st.lists(st.sampled_from([-1, 0, 1, 3, 8, 5, 100_000, 2**31 - 1]), max_size=5))
    tensor_type = data.draw(st.integers(0, 17))
    scales = data.draw(st.lists(st.sampled_from([0.0, -1.0, math.nan, 1.0, 1e-30, math.inf]), max_size=2))
    zero_points = data.draw(st.lists(st.sampled_from([0, 255, -1000, 2**40]), max_size=2))
    outputs = data.draw(st.lists(st.integers(0, 3), max_size=2, unique=True))

    def mutate(model, schema):
        graph = model.subgraphs[0]
        tensor = graph.tensors[tensor_index]
        if choice == 0:
            tensor.shape = shape
        elif choice == 1:
            tensor.type = tensor_type
        elif choice == 2:
            quantization = schema.QuantizationParametersT()
            quantization.scale, quantization.zeroPoint = scales, zero_points
            tensor.quantization = quantization
        else:
            graph.outputs = outputs

    return mutate


@FUZZ
@given(data=st.data())
def test_tflite_files_with_hostile_tensors_keep_the_promise(images, tmp_path_factory, data):
    from tests.test_hostile_invariants import tflite_model

    try:
        model_bytes = tflite_model(tensor_mutation(data))
    except Exception:  # noqa: BLE001 - a change the flatbuffer writer itself refuses is not a file
        return
    folder = tmp_path_factory.mktemp("model")
    path = folder / "model.tflite"
    path.write_bytes(model_bytes)
    result = CliRunner().invoke(main, ["classify", str(path), *map(str, images), "--json"])
    kept_promise(result, (0, 1))


@FUZZ
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6))
def test_tflite_files_with_flipped_bytes_keep_the_promise(images, tmp_path_factory, flips):
    from tests.test_hostile_invariants import tflite_model

    data = bytearray(tflite_model())
    for position, value in flips:
        data[int(position * len(data))] = value
    path = tmp_path_factory.mktemp("model") / "model.tflite"
    path.write_bytes(bytes(data))
    kept_promise(CliRunner().invoke(main, ["classify", str(path), *map(str, images), "--json"]), (0, 1))


@FUZZ
@given(
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.floats(0, 1),
    input_shape=st.lists(st.sampled_from(["batch", 0, 1, 3, 8, 100_000]), min_size=0, max_size=5),
)
def test_onnx_files_keep_the_promise(images, tmp_path_factory, flips, cut, input_shape):
    from tests.test_hostile_invariants import onnx_model

    try:
        data = bytearray(onnx_model(input_shape=tuple(input_shape)) if input_shape else onnx_model())
    except Exception:  # noqa: BLE001 - a graph onnx itself will not build is not a file
        return
    for position, value in flips:
        data[int(position * len(data))] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    path.write_bytes(bytes(data))
    kept_promise(CliRunner().invoke(main, ["classify", str(path), *map(str, images), "--json"]), (0, 1))


# Flag values ------------------------------------------------------------------------------------------------------

flag_texts = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1", "0.5", "1e309", "1e-320", "100000", "2", "", "abc"]),
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@FUZZ
@given(
    flag=st.sampled_from(["--threads", "--threshold", "--top-k", "--batch-size", "--max-megapixels"]),
    value=flag_texts,
)
def test_classify_flags_keep_the_promise(images, tmp_path_factory, flag, value):
    from tests.test_hostile_invariants import tflite_model

    folder = tmp_path_factory.mktemp("model")
    path = folder / "model.tflite"
    path.write_bytes(tflite_model())
    before = snapshot(folder)
    args = [flag, value, "classify", str(path)] if flag == "--max-megapixels" else ["classify", str(path), flag, value]
    result = CliRunner().invoke(main, [*args, *map(str, images), "--json"])
    kept_promise(result)
    if result.exit_code == 0:
        assert len(result.output.splitlines()) == len(images)
    assert snapshot(folder) == before


# Records and files ------------------------------------------------------------------------------------------------


class Interrupted(BaseException):
    """Stands for a signal or a crash at one step of a commit."""


@FUZZ
@given(
    commits=st.lists(
        st.tuples(st.sampled_from(["onnx", "tflite-int8"]), st.binary(min_size=1, max_size=32), st.integers(0, 6)),
        min_size=1,
        max_size=6,
    )
)
def test_records_always_describe_the_files_beside_them(tmp_path_factory, monkeypatch, commits):
    """Commits of new files, each interrupted at a generated step (or not at all): afterwards every record's size
    and sha256 are those of its file, and no temporary is left beside them."""
    import edgetl.run as run_module
    from edgetl.files import remove_if_there, temporary_name
    from edgetl.run import changed_since_export, commit_export, read_exports_index

    root = tmp_path_factory.mktemp("run")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "keep").write_bytes(b"keep")
    real_replace = os.replace
    for name, payload, failing_step in commits:
        destination = root / "exports" / f"{name}.bin"
        destination.parent.mkdir(exist_ok=True)
        written = temporary_name(destination)
        written.write_bytes(payload)
        record = export_record(name, destination.name, payload)
        steps = iter(range(10))

        def replace(source, target, steps=steps, failing_step=failing_step):
            if next(steps) == failing_step:
                raise Interrupted
            return real_replace(source, target)

        monkeypatch.setattr(run_module.os, "replace", replace)
        try:
            commit_export(root / "exports.json", written, destination, record)
        except (Interrupted, EdgetlError):
            pass
        finally:
            monkeypatch.setattr(run_module.os, "replace", real_replace)
            remove_if_there(written)  # what the exporter's `finally` does
        for entry in read_exports_index(root / "exports.json"):
            assert changed_since_export(root, entry, root / "exports.json") is None, entry
        hidden = [p.name for p in (root / "exports").iterdir() if p.name.startswith(".")]
        assert hidden == [], hidden
    assert snapshot(outside) == {"keep": b"keep"}
