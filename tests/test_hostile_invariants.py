"""Hostile input, round two (issue 29): the invariants behind the cases. A file and its record change together;
nothing is written through a link inside a run; everything read back is checked; model files meet a contract
before an image is fed; every flag and stream is bounded."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import main
from edgetl.errors import WriteError
from tests.helpers import export_record


@pytest.fixture(autouse=True)
def pixel_budget_restored():
    """`edgetl --max-megapixels` changes the process's budget (and Pillow's own limit): put both back."""
    from PIL import Image

    from edgetl.runtime import image as image_module

    saved = image_module._max_pixels, Image.MAX_IMAGE_PIXELS
    yield
    image_module._max_pixels, Image.MAX_IMAGE_PIXELS = saved


def one_line_error(result, *fragments: str, code: int = 1) -> str:
    """The command failed with exactly one `Error:` line holding every fragment, and no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


LOCK = ".exports.json.lock"  # an empty file for flock, left in place by design


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder` (hidden ones too, links not followed) but the lock file: its bytes, or None for a
    folder or link."""
    found = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.name != LOCK):
        relative = path.relative_to(folder).as_posix()
        found[relative] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


def fake_export(root: Path, name: str = "tflite-float32", filename: str = "model_float32.tflite", payload=b"v1"):
    """A run's exports part as `edgetl export` leaves it: the file and its record."""
    from edgetl.run import record_export

    path = root / "exports" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    record = export_record(name, filename, payload)
    record_export(root / "exports.json", record)
    return path, record


# A file and its record change together ----------------------------------------------------------------------------


def test_commit_replaces_file_and_record_together(tmp_path):
    from edgetl.run import commit_export

    path, _ = fake_export(tmp_path)
    written = tmp_path / "exports" / ".model_float32.tflite.new.tmp.tflite"
    written.write_bytes(b"v2")
    record = {"format": "tflite-float32", "path": "exports/model_float32.tflite", "sha256": "x", "size_bytes": 2}
    commit_export(tmp_path / "exports.json", written, path, record)
    assert path.read_bytes() == b"v2"
    assert json.loads((tmp_path / "exports.json").read_text())[0]["sha256"] == "x"
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["model_float32.tflite"]


def test_commit_that_cannot_write_the_record_puts_the_old_file_back(tmp_path, monkeypatch):
    from edgetl.run import commit_export

    path, _ = fake_export(tmp_path)
    before = snapshot(tmp_path)
    written = tmp_path / "exports" / ".model_float32.tflite.new.tmp.tflite"
    written.write_bytes(b"v2")

    def full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match="exports.json: could not be written .no space left"):
        commit_export(tmp_path / "exports.json", written, path, {"format": "tflite-float32", "sha256": "x"})
    written.unlink(missing_ok=True)  # the caller's `finally` removes what it wrote
    assert snapshot(tmp_path) == before


def test_commit_interrupted_puts_the_old_folder_back(tmp_path, monkeypatch):
    """A SavedModel is a folder: interrupted between the move and the record, the old folder is back in place."""
    import edgetl.run as run_module
    from edgetl.run import commit_export

    old = tmp_path / "exports" / "savedmodel"
    old.mkdir(parents=True)
    (old / "saved_model.pb").write_bytes(b"old")
    (tmp_path / "exports.json").write_text("[]")
    before = snapshot(tmp_path)
    new = tmp_path / "exports" / ".savedmodel.new.tmp"
    new.mkdir()
    (new / "saved_model.pb").write_bytes(b"new")

    def interrupted(index, record, order=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_write_record", interrupted)
    with pytest.raises(KeyboardInterrupt):
        commit_export(tmp_path / "exports.json", new, old, {"format": "savedmodel"})
    shutil.rmtree(new, ignore_errors=True)
    assert snapshot(tmp_path) == before


def test_a_file_that_differs_from_its_record_is_reported_not_benched(tmp_path):
    from edgetl.benchmark.bench import _bench_exports
    from edgetl.run import RunDir

    path, _ = fake_export(tmp_path)
    onnx, _ = fake_export(tmp_path, "onnx", "model.onnx", b"onnx bytes")
    run = RunDir(tmp_path)
    assert _bench_exports(run) == ([("tflite-float32", path), ("onnx", onnx)], [])
    path.write_bytes(b"v9")  # same size, other bytes: only the sha256 tells
    exports, untrusted = _bench_exports(run)
    assert exports == [("onnx", onnx)]
    assert untrusted == [
        f"{path}: differs from its record in exports.json (size or sha256 changed since `edgetl export` verified "
        f"it); not trusted: export tflite-float32 again"
    ]


# Never write through a link inside a run --------------------------------------------------------------------------


def test_the_lock_file_as_a_link_is_refused_and_nothing_is_created_outside(tmp_path):
    from edgetl.run import record_export

    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    (run / ".exports.json.lock").symlink_to(outside / "planted")
    with pytest.raises(WriteError, match=r"\.exports\.json\.lock: is a symbolic link; edgetl never writes through"):
        record_export(run / "exports.json", {"format": "onnx"})
    assert list(outside.iterdir()) == [] and not (run / "exports.json").exists()


@pytest.mark.parametrize("planted", ["file", "folder"])
def test_the_export_log_through_a_link_is_refused(tmp_path, planted):
    from edgetl.exporting.logs import append_trace, output_to
    from edgetl.files import refuse_links

    run, outside = tmp_path / "run", tmp_path / "outside"
    (run / "logs").mkdir(parents=True)
    outside.mkdir()
    (outside / "victim.log").write_text("precious\n")
    log_path = run / "logs" / "export.log"
    if planted == "file":
        log_path.symlink_to(outside / "victim.log")
        with pytest.raises(WriteError, match="export.log: is a symbolic link"), output_to(log_path):
            print("converter chatter")
        with pytest.raises(WriteError, match="export.log: is a symbolic link"):
            append_trace(log_path, "onnx", ValueError("x"))
    else:
        shutil.rmtree(run / "logs")
        (run / "logs").symlink_to(outside)
        log_path = run / "logs" / "victim.log"
        with pytest.raises(WriteError, match=f"{run / 'logs'}: is a symbolic link inside {run}"):
            refuse_links(run, log_path)
    assert (outside / "victim.log").read_text() == "precious\n"


def write_minimal_dataset(root: Path) -> Path:
    from PIL import Image

    for name, colour in (("red", (250, 0, 0)), ("blue", (0, 0, 250))):
        (root / name).mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (8, 8), colour).save(root / name / f"{index}.png")
    return root


@pytest.mark.parametrize("link", ["report", "exports", "exports.json", "cache"])
def test_train_overwrite_checks_every_path_before_deleting_anything(tmp_path, link):
    data = write_minimal_dataset(tmp_path / "data")
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (run / "model.keras").write_bytes(b"the old model")
    (run / "labels.txt").write_text("red\nblue\n")
    (run / link).symlink_to(outside if "." not in link else outside / "keep.txt")
    before, outside_before = snapshot(run), snapshot(outside)
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(run), "--overwrite", "--epochs", "1"])
    one_line_error(result, f"{run / link}: is a symbolic link inside {run}")
    assert snapshot(run) == before and snapshot(outside) == outside_before


# The run's exports, end to end (a real export of the tiny run) ----------------------------------------------------


@pytest.fixture(scope="module")
def exported_copy(trained_run, tmp_path_factory) -> Path:
    """The tiny run with a tflite-float32 file exported, copied fresh for each test that spoils it."""
    from edgetl.exporting.exporter import ExportOptions, export_run

    run = tmp_path_factory.mktemp("invariants") / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("exports", "exports.json"))
    export_run(run, ["tflite-float32"], options=ExportOptions(min_agreement=0.0))
    return run


@pytest.fixture
def run_copy(exported_copy, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(exported_copy, run, symlinks=True)
    return run


def exports_state(run: Path) -> tuple[dict, str]:
    return snapshot(run / "exports"), (run / "exports.json").read_text()


@pytest.mark.slow
def test_a_failed_export_keeps_the_old_file_and_its_record(run_copy):
    before = exports_state(run_copy)
    preprocessing = json.loads((run_copy / "preprocessing.json").read_text())
    preprocessing["labels"] = preprocessing["labels"][:-1]  # edited: no longer the model's outputs
    (run_copy / "preprocessing.json").write_text(json.dumps(preprocessing))
    result = CliRunner().invoke(main, ["export", str(run_copy), "--formats", "tflite-float32", "-q"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    assert exports_state(run_copy) == before  # no new file, no hidden temporary, the record as it was


INTERRUPTER = textwrap.dedent(
    """
    import os, signal, sys
    import edgetl.exporting.exporter as exporter
    from edgetl.cli import main

    # As a terminal starts it: a shell's background job (make test &) inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    real = exporter.load_written

    def interrupted(export_format, destination):
        # the new file is written under a temporary name (int8: an attempt): the worst moment to be stopped
        assert destination.is_file() and destination.name not in ("model_float32.tflite", "model_int8.tflite")
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        return real(export_format, destination)

    exporter.load_written = interrupted
    main(["export", sys.argv[2], "--formats", sys.argv[3], "-q", "--min-agreement", "0"])
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(("signal_name", "formats"), [("SIGTERM", "tflite-float32"), ("SIGINT", "tflite-int8")])
def test_a_signal_during_export_keeps_the_old_file_and_removes_temporaries(run_copy, signal_name, formats):
    before = exports_state(run_copy)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.run(
        [sys.executable, "-c", INTERRUPTER, signal_name, str(run_copy), formats],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode != 0 and process.returncode != -getattr(signal, signal_name)
    assert "Traceback" not in process.stderr, process.stderr
    assert exports_state(run_copy) == before
    assert not [p for p in run_copy.rglob(".*") if p.name != LOCK]


# Everything read back is checked ----------------------------------------------------------------------------------


def fake_run(root: Path, split: dict | str | bytes | None = None) -> Path:
    """A run directory as `train` leaves it, but with an unloadable model: enough for the reads before Keras."""
    from tests.runtime.tiny_models import metadata

    root.mkdir(parents=True, exist_ok=True)
    (root / "model.keras").write_bytes(b"")
    (root / "preprocessing.json").write_text(metadata().to_json())
    document = split if split is not None else good_split()
    data = document if isinstance(document, str | bytes) else json.dumps(document)
    (root / "split.json").write_bytes(data.encode() if isinstance(data, str) else data)
    return root


def good_split() -> dict:
    return {
        "root": "/data",
        "class_names": ["red", "green", "blue"],
        "train": [["red/1.png", 0], ["green/1.png", 1]],
        "validation": [["blue/1.png", 2]],
        "test": [["red/2.png", 0], ["blue/2.png", 2]],
    }


def spoiled(**changes) -> dict:
    document = good_split()
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("document", "fragments"),
    [
        (spoiled(test=[["red/2.png", 99]]), ["field 'test[0][1]' is 99; expected a class index from 0 to 2"]),
        (spoiled(test=[["red/2.png", -1]]), ["field 'test[0][1]' is -1; input should be greater than or equal to 0"]),
        (spoiled(test=[["red/2.png", "1"]]), ["field 'test[0][1]' is \"1\"; input should be a valid integer"]),
        (spoiled(test=[["red/2.png", True]]), ["field 'test[0][1]' is true"]),
        (spoiled(test=[["red/2.png", 1.5]]), ["field 'test[0][1]' is 1.5"]),
        (spoiled(test=[["red/2.png"]]), ["field 'test[0][1]'"]),
        (spoiled(class_names="red green"), ["field 'class_names' is \"red green\""]),
        (spoiled(class_names=["red", "red", "blue"]), ['class name "red" appears twice']),
        (spoiled(class_names=["red", "gr\neen", "blue"]), ["field 'class_names[1]'"]),
        (spoiled(class_names=[]), ["field 'class_names' is []"]),
        (spoiled(root=None), ["field 'root' is null"]),
        ({"root": "/data"}, ["the split lacks the field 'class_names'"]),
        ([1, 2], ["the split is damaged (a JSON list, not an object)"]),
        ("[" * 100_000 + "]" * 100_000, ["the split is damaged (JSON nested too deeply)"]),
        ("{'root': 1}", ["the split is damaged (not JSON"]),
        (b'{"root": "caf\xe9"}', ["the split is damaged (not UTF-8 text"]),
    ],
)
def test_a_hostile_split_is_one_line_naming_the_field_before_any_work(tmp_path, document, fragments):
    run = fake_run(tmp_path / "run", document)
    result = CliRunner().invoke(main, ["export", str(run), "--formats", "tflite-float32", "-q"])
    line = one_line_error(result, f"Error: {run / 'split.json'}: ", *fragments)
    assert len(line) < 300


def test_a_split_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    import edgetl.schemas as schemas
    from edgetl.run import RunDir

    run = fake_run(tmp_path / "run")
    monkeypatch.setattr(schemas, "MAX_RUN_FILE_BYTES", 100)
    size = (run / "split.json").stat().st_size
    with pytest.raises(Exception, match=rf"split.json: {size} bytes, over the 100-byte limit for the split; refused"):
        RunDir(run).read_split()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"image_size": 10**9}, "field 'image_size' is 1000000000; input should be less than or equal to 4096"),
        ({"epochs": "3"}, "field 'epochs' is \"3\"; input should be a valid integer"),
        ({"dropout": float("nan")}, "field 'dropout' is NaN; input should be a finite number"),
        ({"batch_size": 0}, "field 'batch_size' is 0; input should be greater than or equal to 1"),
        ({"test_fraction": 1.0}, "field 'test_fraction' is 1.0; input should be less than 1"),
        ({"augment": "yes"}, "field 'augment' is \"yes\"; input should be a valid boolean"),
        ({"data_dir": None}, "field 'data_dir' is null"),
    ],
)
def test_a_hostile_run_config_names_the_field(tmp_path, change, fragment):
    from dataclasses import asdict

    from edgetl.config import TrainConfig
    from edgetl.errors import ModelFileError
    from edgetl.run import RunDir

    run = fake_run(tmp_path / "run")
    (run / "config.json").write_text(json.dumps({**asdict(TrainConfig(data_dir="/data")), **change}))
    with pytest.raises(ModelFileError) as caught:
        RunDir(run).read_config()
    assert str(caught.value).startswith(f"{run / 'config.json'}: the run config {fragment}")


def test_a_good_run_config_and_split_read_back_as_written(tmp_path):
    from edgetl.config import TrainConfig
    from edgetl.run import RunDir

    run = fake_run(tmp_path / "run")
    config = TrainConfig(data_dir="/data", image_size=96, alpha=0.35, fine_tune_learning_rate=1e-5)
    (run / "config.json").write_text(json.dumps({**json.loads(config.to_json()), "from_a_newer_edgetl": 1}))
    assert RunDir(run).read_config() == config
    split = RunDir(run).read_split()
    assert [(e.path, e.label) for e in split.test] == [(Path("/data/red/2.png"), 0), (Path("/data/blue/2.png"), 2)]


GOOD_RECORD = {"format": "onnx", "path": "exports/model.onnx", "size_bytes": 3, "sha256": "a" * 64, "passed": True}


@pytest.mark.parametrize(
    ("records", "fragment"),
    [
        ([{**GOOD_RECORD, "path": "../../etc/passwd"}], "field '[0].path' is \"../../etc/passwd\"; expected a path"),
        ([{**GOOD_RECORD, "path": "/etc/passwd"}], "field '[0].path' is \"/etc/passwd\""),
        ([{**GOOD_RECORD, "sha256": "x"}], "field '[0].sha256' is \"x\"; string should match pattern"),
        ([{**GOOD_RECORD, "size_bytes": -1}], "field '[0].size_bytes' is -1"),
        ([{**GOOD_RECORD, "passed": "true"}], "field '[0].passed' is \"true\"; input should be a valid boolean"),
        ([{**GOOD_RECORD, "format": "a\nb"}], "field '[0].format' is \"a\\nb\""),
        ([GOOD_RECORD] * 1001, "list should have at most 1000 items after validation, not 1001"),
        ({"format": "onnx"}, 'the exports index is {"format": "onnx"}; input should be a valid list'),
        ([GOOD_RECORD, {"format": "onnx"}], "the exports index lacks the field '[1].path' (and 3 more problems)"),
    ],
)
def test_a_hostile_exports_index_names_the_record_and_field(tmp_path, records, fragment):
    from edgetl.errors import ModelFileError
    from edgetl.run import read_exports_index, record_export

    index = tmp_path / "exports.json"
    index.write_text(json.dumps(records))
    with pytest.raises(ModelFileError) as caught:
        read_exports_index(index)
    assert str(caught.value).startswith(f"{index}: the exports index ") and fragment in str(caught.value)
    with pytest.raises(ModelFileError):  # nothing is merged into a damaged index: it stays as it was
        record_export(index, GOOD_RECORD)
    assert json.loads(index.read_text()) == records


def bench_row(**changes) -> dict:
    row = {
        "format": "onnx", "path": "model.onnx", "size_bytes": 1000, "top1": 0.9, "top5": 1.0, "agreement": None,
        "latency_ms": {"p50": 1.0, "p90": 1.2, "p99": 1.5, "mean": 1.1, "std": 0.1}, "throughput_ips": 10.0,
        "threads": 1, "runtime": "onnxruntime", "device": "x86_64", "provider": "CPU", "batch": 8, "runs": 10,
        "load_ms": 10.0, "peak_rss_bytes": None, "peak_rss_scope": "format", "images": 10, "host": "board",
    }  # fmt: skip
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        (json.dumps([bench_row(top1=float("nan"))]), "field '[0].top1' is NaN; input should be a finite number"),
        ([bench_row(top1=2.0)], "field '[0].top1' is 2.0; input should be less than or equal to 1"),
        ([bench_row(latency_ms={"p50": -1})], "field '[0].latency_ms.p50' is -1"),
        ([bench_row(batch=10**12)], "field '[0].batch' is 1000000000000"),
        ([bench_row(fingerprint={"x": "y" * 100_000})], "field '[0].fingerprint' is"),
        ([bench_row(threads=True)], "field '[0].threads' is true"),
        ([], "bench JSON is []; list should have at least 1 item"),
        ({"not": "rows"}, "expected the list of rows `edgetl bench --json` writes"),
        ("[" * 50_000 + "]" * 50_000, "bench JSON is damaged (JSON nested too deeply)"),
    ],
)
def test_hostile_bench_json_is_one_line_naming_the_row_and_field(tmp_path, rows, fragment):
    path = tmp_path / "board.json"
    path.write_text(rows if isinstance(rows, str) else json.dumps(rows))
    result = CliRunner().invoke(main, ["bench", "compare", str(path)])
    one_line_error(result, f"Error: {path}: ", fragment)


def test_good_bench_json_compares(tmp_path):
    path = tmp_path / "board.json"
    path.write_text(json.dumps([bench_row(), bench_row(threads=2)]))
    result = CliRunner().invoke(main, ["bench", "compare", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.count("onnx") >= 2


# Model files meet a contract before an image is fed ----------------------------------------------------------------


def tflite_model(mutate=None, size: int = 8, labels: list[str] | None = None, dtype: str = "FLOAT32") -> bytes:
    """The tiny TFLite model, changed by `mutate(model, schema)` (a flatbuffer object tree), with edgetl metadata."""
    import io
    import zipfile

    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgetl.runtime.metadata import METADATA_KEY
    from tests.runtime.tiny_models import COLOURS, metadata, tflite_flatbuffer

    model = schema.ModelT.InitFromPackedBuf(tflite_flatbuffer(size, dtype), 0)
    if mutate is not None:
        mutate(model, schema)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(METADATA_KEY, metadata(labels or COLOURS, size).to_json())
    return bytes(builder.Output()) + archive.getvalue()


def set_input_shape(shape):
    def mutate(model, schema):
        model.subgraphs[0].tensors[0].shape = list(shape)

    return mutate


def set_input_type(name):
    def mutate(model, schema):
        model.subgraphs[0].tensors[0].type = getattr(schema.TensorType, name)

    return mutate


def no_outputs(model, schema):
    model.subgraphs[0].outputs = []


def no_inputs(model, schema):
    model.subgraphs[0].inputs = []


def two_inputs(model, schema):
    model.subgraphs[0].inputs = [0, 1]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (set_input_shape([1, 100_000, 100_000, 3]), "its input 'pixels' is [1, 100000, 100000, 3]; expected"),
        (set_input_shape([1, 8, 8, 3, 1]), "its input 'pixels' has rank 5"),
        (set_input_shape([1, 0, 8, 3]), "its input 'pixels' is [1, 0, 8, 3]"),
        (set_input_shape([1, 8, 8, 4]), "its input 'pixels' is [1, 8, 8, 4]"),
        (set_input_type("STRING"), "its input 'pixels' is of type bytes; edgetl feeds float32, uint8, int8 pixels"),
        (set_input_type("INT64"), "its input 'pixels' is of type int64; edgetl feeds float32, uint8, int8 pixels"),
        (set_input_type("UINT8"), "its uint8 input 'pixels' has no usable quantisation parameters (scales []"),
        (no_outputs, "has no output"),
        (no_inputs, "takes 0 inputs"),
        (two_inputs, "takes 2 inputs"),
    ],
)
def test_a_tflite_file_that_breaks_the_contract_is_refused_before_an_image(tmp_path, mutate, fragment):
    from PIL import Image

    path = tmp_path / "model.tflite"
    try:
        path.write_bytes(tflite_model(mutate))
    except Exception as error:  # a flatbuffer the schema itself will not pack is no test of edgetl
        pytest.skip(f"cannot build this file: {error}")
    image = tmp_path / "red.png"
    Image.new("RGB", (8, 8), (250, 0, 0)).save(image)
    result = CliRunner().invoke(main, ["classify", str(path), str(image)])
    one_line_error(result, f"Error: {path}: ", fragment)


def test_the_untouched_tiny_model_meets_the_contract(tmp_path):
    from PIL import Image

    path = tmp_path / "model.tflite"
    path.write_bytes(tflite_model())
    image = tmp_path / "red.png"
    Image.new("RGB", (8, 8), (250, 0, 0)).save(image)
    result = CliRunner().invoke(main, ["classify", str(path), str(image), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["label"] == "red", result.output


def onnx_model(input_shape=("batch", 8, 8, 3), input_type=None, output_shape=("batch", 3), labels=None) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    from edgetl.runtime.metadata import METADATA_KEY
    from tests.runtime.tiny_models import COLOURS, metadata

    nodes = [
        helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Softmax", ["mean"], ["probabilities"], axis=-1),
    ]
    if input_type is not None:  # cast the odd input to float so the graph itself is valid
        nodes.insert(0, helper.make_node("Cast", ["raw"], ["pixels"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info(
                "raw" if input_type else "pixels", input_type or TensorProto.FLOAT, input_shape
            )
        ],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, output_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.helper.set_model_props(model, {METADATA_KEY: metadata(labels or COLOURS).to_json()})
    return model.SerializeToString()


@pytest.mark.parametrize(
    ("model", "fragment"),
    [
        ({"input_shape": ("batch", 100_000, 100_000, 3)}, "its input 'pixels' is [None, 100000, 100000, 3]"),
        ({"input_shape": ("batch", 8, 8, 3, 1)}, "its input 'pixels' has rank 5"),
        ({"input_shape": (1, 0, 8, 3)}, "its input 'pixels' is [1, 0, 8, 3]"),
        ({"input_type": 8}, "its input 'raw' is of type str"),  # TensorProto.STRING
        ({"input_type": 7}, "its input 'raw' is of type int64"),  # TensorProto.INT64
        (
            {"output_shape": ("batch", 5), "labels": ["a", "b", "c", "d", "e"]},
            "gave scores of shape [1, 3] for 1 image(s); its labels need [1, 5]",
        ),
    ],
)
def test_an_onnx_file_that_breaks_the_contract_is_one_line(tmp_path, model, fragment):
    from PIL import Image

    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_model(**model))
    image = tmp_path / "red.png"
    Image.new("RGB", (8, 8), (250, 0, 0)).save(image)
    result = CliRunner().invoke(main, ["classify", str(path), str(image)])
    one_line_error(result, f"Error: {path}: ", fragment)


def standard_tflite(labels: bytes) -> bytes:
    """The tiny model as another tool writes it: standard TFLite metadata naming labels.txt (deflated, whatever it
    holds) in the appended zip, and no edgetl metadata."""
    import io
    import zipfile

    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgetl.exporting.metadata import standard_metadata
    from tests.runtime.tiny_models import metadata, tflite_flatbuffer

    model = schema.ModelT.InitFromPackedBuf(tflite_flatbuffer(), 0)
    buffer = schema.BufferT()
    buffer.data = list(standard_metadata(metadata(), ["float32"], 1))
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "TFLITE_METADATA", len(model.buffers) - 1
    model.metadata = [entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("labels.txt", labels)
    return bytes(builder.Output()) + archive.getvalue()


def test_the_standard_metadata_labels_are_read_under_the_cap(tmp_path):
    """A labels member that inflates past the cap is refused without inflating it; a damaged one is one line."""
    from edgetl.errors import ModelFileError
    from edgetl.runtime.metadata import MAX_METADATA_BYTES
    from edgetl.runtime.tflite_metadata import read_standard_metadata

    good = standard_tflite(b"red\ngreen\nblue\n")
    assert read_standard_metadata(good).labels == ("red", "green", "blue")
    bomb = standard_tflite(b" " * (MAX_METADATA_BYTES * 4))
    assert len(bomb) < 100_000
    with pytest.raises(ModelFileError, match=f"labels.txt would decompress to more than {MAX_METADATA_BYTES} bytes"):
        read_standard_metadata(bomb)
    start = good.index(b"PK\x03\x04")
    damaged = bytearray(good)
    damaged[start + 30 + len("labels.txt") : start + 30 + len("labels.txt") + 4] = b"\xff\xff\xff\xff"
    with pytest.raises(ModelFileError) as caught:
        read_standard_metadata(bytes(damaged))
    assert str(caught.value).startswith("TFLite model (bytes): the TFLite metadata is damaged (")
    assert "\n" not in str(caught.value)


# Bounds on every flag and stream -----------------------------------------------------------------------------------


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path, Path]:
    """The tiny TFLite model and a red and a blue image."""
    from PIL import Image

    model = tmp_path / "model.tflite"
    model.write_bytes(tflite_model())
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (8, 8), (250, 0, 0)).save(red)
    Image.new("RGB", (8, 8), (0, 0, 250)).save(blue)
    return model, red, blue


def usage_error(result, *fragments: str) -> str:
    """click's answer to a bad command line: exit 2, one `Error:` line, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def test_thread_counts_are_bounded_by_the_cores(tiny, tmp_path):
    from edgetl.runtime.bounds import max_threads

    model, red, _ = tiny
    result = CliRunner().invoke(main, ["classify", str(model), str(red), "--threads", "100000"])
    usage_error(result, f"--threads 100000: expected 1 to {max_threads()} threads")
    result = CliRunner().invoke(main, ["bench", str(model), "--images", str(tmp_path), "--threads", "1,100000"])
    usage_error(result, f"--threads 100000: expected 1 to {max_threads()} threads")
    ok = CliRunner().invoke(main, ["classify", str(model), str(red), "--threads", str(max_threads()), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["label"] == "red", ok.output


@pytest.mark.parametrize(
    "args",
    [
        ["--max-megapixels", "inf", "classify", "M", "R"],
        ["--max-megapixels", "nan", "classify", "M", "R"],
        ["classify", "M", "R", "--threshold", "nan"],
        ["classify", "M", "R", "--threshold", "1.5"],
        ["bench", "compare", "R", "--min-agreement", "nan"],
        ["bench", "compare", "R", "--max-p90-ms", "inf"],
        ["bench", "compare", "R", "--max-accuracy-drop", "nan"],
    ],
)
def test_shares_and_budgets_must_be_finite_and_in_range(tiny, args):
    model, red, _ = tiny
    args = [str(model) if a == "M" else str(red) if a == "R" else a for a in args]
    usage_error(CliRunner().invoke(main, args), "Invalid value for")


def test_the_library_refuses_what_the_flags_refuse():
    from edgetl.errors import UsageError
    from edgetl.runtime.bounds import check_batch, check_share, check_threads
    from edgetl.runtime.image import set_max_megapixels

    for bad in (float("nan"), float("inf"), 0, -1):
        with pytest.raises(UsageError, match="--max-megapixels"):
            set_max_megapixels(bad)
    for bad in (float("nan"), -0.1, 1.1, True):
        with pytest.raises(UsageError, match="threshold"):
            check_share(bad, "threshold")
    for bad in (0, -1, 10**9, True):
        with pytest.raises(UsageError, match="--threads"):
            check_threads(bad)
    with pytest.raises(UsageError, match=r"--batch 100000000: batches of 100000000 224x224 images would not fit"):
        check_batch(10**8, (224, 224))
    assert check_batch(32, (224, 224)) == 32


def test_batches_are_bounded_by_the_memory(tiny, tmp_path):
    model, red, _ = tiny
    images = tmp_path / "images"
    (images / "red").mkdir(parents=True)
    shutil.copy(red, images / "red" / "1.png")
    result = CliRunner().invoke(main, ["classify", str(model), str(red), "--batch-size", str(10**9)])
    usage_error(result, f"--batch-size {10**9}: batches of {10**9} 8x8 images would not fit")
    result = CliRunner().invoke(main, ["bench", str(model), "--images", str(images), "--batch", str(10**9)])
    usage_error(result, f"--batch {10**9}: batches of {10**9} 8x8 images would not fit")


def test_a_glob_through_a_link_loop_ends(tiny, tmp_path):
    model, red, blue = tiny
    photos = tmp_path / "photos"
    (photos / "a" / "b").mkdir(parents=True)
    shutil.copy(red, photos / "a" / "red.png")
    shutil.copy(blue, photos / "a" / "b" / "blue.png")
    (photos / "a" / "b" / "loop").symlink_to(photos)
    (photos / "a" / "loop2").symlink_to(photos / "a")
    pattern = f"{photos}/**/*.png"
    result = CliRunner().invoke(main, ["classify", str(model), pattern, "--json"])
    assert result.exit_code == 0, result.output
    labels = {Path(entry["file"]).name: entry["label"] for entry in map(json.loads, result.output.splitlines())}
    assert labels == {"red.png": "red", "blue.png": "blue"}


def test_each_entry_of_a_path_list_fails_alone(tiny):
    model, red, blue = tiny
    listing = b"\n".join(
        [str(red).encode(), str(red).encode() + b"\0x", b"\xff\xfe.png", b"a" * 100_000, str(blue).encode()]
    )
    result = CliRunner().invoke(main, ["classify", str(model), "-", "--json"], input=listing + b"\n")
    assert result.exit_code == 1 and "Traceback" not in result.output + result.stderr, result.output
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [entry.get("label") for entry in entries] == ["red", None, None, None, "blue"]
    assert entries[1]["error"] == f"{red}\\0x: holds a NUL byte, which no file name can"
    assert entries[2]["error"] == "standard input line 3: not UTF-8 text (invalid start byte); skipped"
    assert entries[3]["error"] == "standard input line 4: longer than 4096 bytes, no path; skipped"


def test_a_list_without_newlines_is_read_in_bounded_pieces():
    import io

    from edgetl.runtime.classify import MAX_PATH_BYTES, MissingInput, read_path_list

    class Counting(io.BytesIO):
        largest = 0

        def readline(self, size=-1):
            Counting.largest = max(Counting.largest, size)
            return super().readline(size)

    stream = Counting(b"x" * (50 * MAX_PATH_BYTES) + b"\nphoto.png")
    assert list(read_path_list(stream)) == [
        MissingInput("standard input line 1", f"longer than {MAX_PATH_BYTES} bytes, no path; skipped"),
        "photo.png",
    ]
    assert 0 < Counting.largest <= MAX_PATH_BYTES + 1


def test_a_csv_that_is_not_utf8_is_one_line(tiny, tmp_path):
    from PIL import Image

    model, red, _ = tiny
    listing = tmp_path / "images.csv"
    listing.write_bytes(b"file,label\nr\xe9d.png,red\n")
    result = CliRunner().invoke(main, ["bench", str(model), "--images", str(listing)])
    reason = "not UTF-8 text: invalid continuation byte; save it as UTF-8"
    one_line_error(result, f"{listing}: cannot be read as a UTF-8 CSV file ({reason})")
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    for name in ("a", "b", "c", "d", "e", "f"):
        Image.new("RGB", (8, 8)).save(data / "train" / f"{name}.png")
    (data / "labels.csv").write_bytes(b"id,label\na,caf\xe9\nb,caf\xe9\nc,caf\xe9\nd,tea\ne,tea\nf,tea\n")
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "run")])
    one_line_error(result, f"{data / 'labels.csv'}: cannot be read as a UTF-8 CSV file")
    assert not (tmp_path / "run").exists()


def test_a_narrow_terminal_gets_every_row_stacked(tmp_path):
    path = tmp_path / "board.json"
    rows = [bench_row(), bench_row(format="tflite-int8", threads=2, top1=0.8)]
    path.write_text(json.dumps(rows))
    result = CliRunner(env={"COLUMNS": "20"}).invoke(main, ["bench", "compare", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "onnx" in lines and "tflite-int8" in lines
    assert "  top-1: 0.900*" in lines and "  top-1: 0.800" in lines
    assert "…" not in result.output


# What the fuzzers found (tests/test_fuzz.py), kept as cases ------------------------------------------------------


def test_preprocessing_json_that_is_not_utf8_is_one_line(tmp_path):
    from edgetl.errors import ModelFileError
    from edgetl.run import RunDir

    run = fake_run(tmp_path / "run")
    (run / "preprocessing.json").write_bytes(b"\x80")
    with pytest.raises(ModelFileError, match=r"preprocessing.json: edgetl metadata is damaged \(not UTF-8 text"):
        RunDir(run).read_metadata()


def test_a_tflite_file_whose_kernels_refuse_its_tensors_is_one_line(tiny):
    model, red, _ = tiny

    def float64_mean(model, schema):
        model.subgraphs[0].tensors[2].type = schema.TensorType.FLOAT64

    model.write_bytes(tflite_model(float64_mean))
    result = CliRunner().invoke(main, ["classify", str(model), str(red)])
    one_line_error(result, f"{model}: the model fails to run (")


def test_an_onnx_file_whose_names_are_not_utf8_is_one_line(tiny, tmp_path):
    _, red, _ = tiny
    data = bytearray(onnx_model())
    data[int(0.25 * len(data))] = 128  # inside the output's name: onnxruntime quotes it, undecodable, in its error
    path = tmp_path / "model.onnx"
    path.write_bytes(bytes(data))
    one_line_error(CliRunner().invoke(main, ["classify", str(path), str(red)]), f"{path}: not a loadable ONNX model")


def test_an_onnx_input_with_one_side_fixed_wrong_is_one_line(tiny, tmp_path):
    _, red, _ = tiny
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_model(input_shape=("batch", "height", 1, 3)))  # the metadata says 8x8
    result = CliRunner().invoke(main, ["classify", str(path), str(red)])
    one_line_error(result, f"{path}: edgetl metadata says input_size [8, 8] but the model takes heightx1 images")
    path.write_bytes(onnx_model(input_shape=("batch", "batch", 1, "batch")))
    one_line_error(CliRunner().invoke(main, ["classify", str(path), str(red)]), f"{path}: the model fails to run (")


def test_a_pixel_budget_too_large_to_count_is_refused(tiny):
    model, red, _ = tiny
    result = CliRunner().invoke(main, ["--max-megapixels", "1.797693134862316e+302", "classify", str(model), str(red)])
    usage_error(result, "--max-megapixels")


BENCH_INTERRUPTER = textwrap.dedent(
    """
    import os, signal, sys
    import edgetl.benchmark.exported as exported
    from edgetl.cli import main

    def interrupted(*args, **kwargs):
        # bench's decoded images are in its temporary folder: the moment a SIGTERM must not leave them behind
        os.kill(os.getpid(), signal.SIGTERM)

    exported.measure_isolated = interrupted
    main(["bench", sys.argv[1], "--images", sys.argv[2], "-q"])
    """
)


def test_a_sigterm_during_bench_leaves_no_temporary_files(tiny, tmp_path):
    model, red, _ = tiny
    images, scratch = tmp_path / "images", tmp_path / "tmp"
    (images / "red").mkdir(parents=True)
    shutil.copy(red, images / "red" / "1.png")
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(scratch)}
    process = subprocess.run(
        [sys.executable, "-c", BENCH_INTERRUPTER, str(model), str(images)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 1 and "Traceback" not in process.stderr, process.stderr
    assert "Aborted" in process.stderr
    assert list(scratch.iterdir()) == []


def test_a_labels_file_is_read_under_the_cap(tmp_path):
    from edgetl.errors import DataError
    from edgetl.runtime.foreign import read_labels
    from edgetl.runtime.metadata import MAX_METADATA_BYTES

    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"a\nb\n" + b" " * MAX_METADATA_BYTES)
    with pytest.raises(DataError, match=f"labels.txt: over {MAX_METADATA_BYTES} bytes"):
        read_labels(labels)
    labels.write_bytes(b"caf\xe9\ntea\n")
    with pytest.raises(DataError, match="labels.txt: cannot read the labels file"):
        read_labels(labels)
    labels.write_text("cat\ndog\n")
    assert read_labels(labels) == ["cat", "dog"]
