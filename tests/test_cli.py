"""Every command through the CLI, as a user runs it: exit codes, one-line errors, files written."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgetl.cli import main
from tests.helpers import invoke


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("train", "export", "bench", "classify", "sample-data"):
        assert command in result.output


def test_sample_data_writes_class_folders(tmp_path):
    result = invoke("sample-data", tmp_path / "digits", "--per-class", 4)
    assert result.exit_code == 0, result.output
    classes = sorted(p.name for p in (tmp_path / "digits").iterdir())
    assert len(classes) == 10 and "seven" in classes
    assert len(list((tmp_path / "digits" / "seven").glob("*.png"))) == 4
    again = invoke("sample-data", tmp_path / "digits")
    assert_one_line_error(again, "not empty")


def test_train_refuses_bad_folders(tmp_path):
    def train(data):
        return invoke("train", data, "--out", tmp_path / "run", "--weights", "none")

    missing = tmp_path / "missing"
    assert_one_line_error(train(missing), str(missing), "no such folder")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.png").write_bytes(b"x")
    assert_one_line_error(train(flat), str(flat), "no class subfolders")
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "cats" / "notes.txt").write_text("no pictures here")
    assert_one_line_error(train(empty), str(empty), "no image files")
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_class_with_one_image(sample_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sample_dir, data)
    for extra in sorted((data / "nine").iterdir())[1:]:
        extra.unlink()
    result = invoke("train", data, "--out", tmp_path / "run", "--weights", "none", "--image-size", 32)
    assert_one_line_error(result, "nine", "has 1 image")


def test_train_refuses_bad_options(sample_dir, tmp_path):
    common = ("train", sample_dir, "--out", tmp_path / "run", "--weights", "none")
    assert_one_line_error(invoke(*common, "--backbone", "alexnet"), "unknown backbone 'alexnet'", "mobilenetv2")
    assert_one_line_error(invoke(*common, "--alpha", 0.6), "--alpha 0.6", "0.35")
    assert_one_line_error(invoke(*common, "--backbone", "xception", "--image-size", 32), "at least 71")
    weights = invoke("train", sample_dir, "--out", tmp_path / "run", "--weights", tmp_path / "nope.h5")
    assert_one_line_error(weights, "nope.h5", "no such file")


@pytest.mark.slow
def test_train_writes_the_run(trained_run):
    for name in ("model.keras", "labels.txt", "config.json", "preprocessing.json", "split.json", "history.json"):
        assert (trained_run / name).is_file(), name
    labels = (trained_run / "labels.txt").read_text().split()
    assert len(labels) == 10 and labels[0] == "eight"
    split = json.loads((trained_run / "split.json").read_text())
    assert len(split["train"]) + len(split["validation"]) + len(split["test"]) == 90
    assert {label for _, label in split["test"]} == set(range(10))
    config = json.loads((trained_run / "config.json").read_text())
    assert config["backbone"] == "mobilenetv2" and config["alpha"] == 0.35 and config["image_size"] == 32
    preprocessing = json.loads((trained_run / "preprocessing.json").read_text())
    assert preprocessing["normalization"]["mode"] == "tf"
    assert preprocessing["input_size"] == [32, 32]
    history = json.loads((trained_run / "history.json").read_text())
    assert len(history["stage1"]["loss"]) == 1


@pytest.mark.slow
def test_train_refuses_to_overwrite_a_run(trained_run, sample_dir):
    result = invoke("train", sample_dir, "--out", trained_run, "--weights", "none", "--image-size", 32)
    assert_one_line_error(result, "already holds a trained model", "--overwrite")


@pytest.mark.slow
def test_export_cli_writes_verified_files(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = invoke("export", run, "--int8", "--calibration-samples", 20, "--min-agreement", 0)
    assert result.exit_code == 0, result.output
    for fmt in ("tflite-float32", "tflite-int8", "onnx", "onnx-int8"):
        assert fmt in result.output
    assert "uint8/uint8" in result.output
    runs_on = next(line for line in result.output.splitlines() if line.startswith("runs on: "))
    assert runs_on == "runs on: tflite-float32, tflite-int8: LiteRT, MediaPipe; onnx, onnx-int8: onnxruntime"
    records = {r["format"]: r for r in json.loads((run / "exports.json").read_text())}
    assert set(records) == {"tflite-float32", "tflite-int8", "onnx", "onnx-int8"}
    assert (run / "exports" / "model_int8.tflite").stat().st_size == records["tflite-int8"]["size_bytes"]


@pytest.mark.slow
def test_export_fails_below_the_gate_and_keeps_the_file(trained_run, tmp_path, monkeypatch):
    from edgetl.exporting import exporter

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    strict = dataclasses.replace(exporter.FORMATS["tflite-float32"], min_agreement=1.01)  # cannot be met
    monkeypatch.setitem(exporter.FORMATS, "tflite-float32", strict)
    result = invoke("export", run, "--no-onnx")
    assert result.exit_code != 0
    assert "tflite-float32 disagree with Keras too often" in result.output
    assert (run / "exports" / "model_float32.tflite").is_file()
    record = json.loads((run / "exports.json").read_text())[0]
    assert record["passed"] is False and record["min_agreement"] == 1.01


def test_export_refuses_bad_format_options(tmp_path):
    run = tmp_path / "run"
    assert_one_line_error(invoke("export", run, "--formats", "tflite-int4"), "tflite-int4", "tflite-float16")
    result = invoke("export", run, "--quantizer", "ai-edge", "--io-type", "uint8")
    assert_one_line_error(result, "--io-type uint8", "--quantizer converter")
    assert_one_line_error(invoke("export", run, "--labels", tmp_path / "l.txt"), "--labels", "Keras model file")


def test_export_refuses_an_option_no_chosen_format_takes(tmp_path):
    run = tmp_path / "run"
    result = invoke("export", run, "--formats", "onnx", "--io-type", "uint8")
    assert_one_line_error(result, "--io-type applies to tflite-int8, which --formats does not include")
    result = invoke("export", run, "--formats", "tflite-float32,tflite-int8", "--opset", 15)
    assert_one_line_error(result, "--opset applies to onnx, onnx-int8")
    result = invoke("export", run, "--int8-fallback", "none")  # the default formats have no int8 file
    assert_one_line_error(result, "--int8-fallback applies to tflite-int8, onnx-int8", "tflite-float32, onnx")
    result = invoke("export", run, "--formats", "savedmodel", "--calibration-samples", 50)
    assert_one_line_error(result, "--calibration-samples applies to tflite-int8, onnx-int8")


def test_export_refuses_a_damaged_run(tmp_path):
    assert_one_line_error(invoke("export", tmp_path / "nowhere"), "no such run directory")
    run = tmp_path / "run"
    run.mkdir()
    assert_one_line_error(invoke("export", run), "not a finished edgetl run", "model.keras")


@pytest.mark.slow
def test_export_refuses_a_model_file_that_is_not_a_model(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "model.keras").write_bytes(b"this is not a keras file")
    assert_one_line_error(invoke("export", run), "model.keras", "not a loadable Keras model")


@pytest.mark.slow
def test_bench_cli_table_and_json(exported_run, tmp_path):
    out = tmp_path / "bench.json"
    result = invoke("bench", exported_run, "--json", out, "--runs", 5, "--warmup", 1)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [row["format"] for row in rows] == ["keras", "keras-predict", "tflite-float32", "tflite-int8", "onnx"]
    for row in rows:
        assert set(row) >= {"format", "path", "size_bytes", "top1", "agreement", "latency_ms"}
        latency = row["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
        assert 0.0 <= row["top1"] <= 1.0 and row["size_bytes"] > 0
    by_format = {row["format"]: row for row in rows}
    assert by_format["keras"]["agreement"] == 1.0
    # A one-epoch model is nearly uniform, so agreement can hinge on 1e-7; exports.json holds the tight check.
    assert by_format["tflite-float32"]["agreement"] >= 0.9 and by_format["onnx"]["agreement"] >= 0.9
    assert by_format["tflite-int8"]["size_bytes"] < by_format["tflite-float32"]["size_bytes"] / 2


def test_bench_refuses_a_missing_run(tmp_path):
    assert_one_line_error(invoke("bench", tmp_path / "nothing"), "no such run directory")


@pytest.mark.slow
@pytest.mark.parametrize("filename", ["model_int8.tflite", "model_float32.tflite", "model.onnx"])
def test_classify_cli_json(exported_run, sample_dir, filename):
    model = exported_run / "exports" / filename
    images = sorted((sample_dir / "three").iterdir())[:2]
    result = invoke("classify", model, *images, "--top-k", 2, "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    labels = (exported_run / "labels.txt").read_text().split()
    assert [line["file"] for line in lines] == [str(p) for p in images]
    for line in lines:
        assert len(line["top"]) == 2 and {t["label"] for t in line["top"]} <= set(labels)
        scores = [t["score"] for t in line["top"]]
        assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1.0


@pytest.mark.slow
def test_classify_folder_and_bad_file(exported_run, sample_dir, tmp_path):
    folder = tmp_path / "incoming"
    shutil.copytree(sample_dir / "four", folder)
    (folder / "corrupt.png").write_bytes(b"\x89PNG but not really")
    result = CliRunner().invoke(main, ["classify", str(exported_run / "exports" / "model.onnx"), str(folder)])
    assert result.exit_code == 1
    good = [line for line in result.output.splitlines() if "error" not in line]
    assert len(good) == 9
    assert "corrupt.png: error:" in result.output


def test_classify_refuses_a_file_that_is_not_a_model(tmp_path):
    fake = tmp_path / "model.tflite"
    fake.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert_one_line_error(invoke("classify", fake, image), "model.tflite")
    assert_one_line_error(invoke("classify", tmp_path / "model.pt", image), "no such model file")
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    assert_one_line_error(invoke("classify", other, image), "unknown model format '.pt'")


@pytest.mark.parametrize("name", ["run", "compare"])
def test_bench_takes_a_directory_named_like_a_subcommand_for_a_path(tmp_path, monkeypatch, name):
    (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    # The directory is benched (and refused: it holds no trained model), not parsed as the subcommand.
    assert_one_line_error(invoke("bench", name), f"{name}: not a finished edgetl run", "model.keras")
    monkeypatch.chdir(tmp_path / name)
    assert "Missing argument" in invoke("bench", "run").output  # no such path here: the subcommand


@pytest.mark.parametrize(
    "command",
    [(), ("sample-data",), ("train",), ("export",), ("bench",), ("bench", "run"), ("bench", "compare"),
     ("classify",), ("doctor",)],
)  # fmt: skip
def test_help_reads_well_at_100_columns(command):
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 100, result.output
    if "Commands:" in result.output:  # no summary cut short in the list of commands
        assert not any(line.endswith("...") for line in result.output.split("Commands:")[1].splitlines())
    assert "Example: edgetl " in result.output or "edgetl sample-data digits" in result.output


def test_the_export_summary_says_what_float_layers_cost_against_the_best_integer_file():
    from edgetl.exporting.record import ExportRecord
    from edgetl.exporting.report import fallback_cost

    def attempt(recipe, agreement, confident, size, float_layers=()):
        return {"recipe": recipe, "agreement": agreement, "confident_agreement": confident, "size_bytes": size,
                "float_layers": list(float_layers)}  # fmt: skip

    attempts = [
        attempt("percentile-200+bias", 0.8967, 0.9941, 2_700_000),
        attempt("percentile-600+bias", 0.9067, 0.9822, 2_640_000),
        attempt("percentile-600+bias+float1", 0.9050, 1.0, 2_772_000, ["conv"]),
    ]
    record = ExportRecord(
        format="tflite-int8", path="model_int8.tflite", size_bytes=2_772_000, sha256="", input_dtype="uint8",
        output_dtype="uint8", images=600, agreement=0.905, top1=None, keras_top1=None, max_probability_diff=0.2,
        flipped_files=[], min_agreement=0.9, passed=True, confident_images=169, confident_agreement=1.0,
        recipe="percentile-600+bias+float1", float_layers=["conv"], attempts=attempts,
    )  # fmt: skip
    assert fallback_cost(record) == (
        " (1 layer(s) in float: agreement 0.9067 -> 0.9050, on confident images 0.9822 -> 1.0000, size +5%)"
    )
    assert fallback_cost(dataclasses.replace(record, float_layers=[])) == ""


def test_the_export_summary_says_where_an_attempt_stopped_once_it_could_not_settle():
    from edgetl.exporting.record import ExportRecord
    from edgetl.exporting.report import record_notes

    attempts = [
        {"recipe": "percentile-600+bias", "agreement": 0.8967, "passed": False, "images": 600},
        {"recipe": "percentile-600+bias+float1", "agreement": 0.8889, "passed": None, "images": 9},
        {"recipe": "percentile-600+bias+float2", "agreement": 0.9067, "passed": True, "images": 600},
    ]
    record = ExportRecord(
        format="onnx-int8", path="model_int8.onnx", size_bytes=1, sha256="", input_dtype="float32",
        output_dtype="float32", images=600, agreement=0.9067, top1=None, keras_top1=None, max_probability_diff=0.2,
        flipped_files=[], min_agreement=0.9, passed=True, recipe="percentile-600+bias+float2", attempts=attempts,
    )  # fmt: skip
    assert record_notes(record)[0] == (
        "onnx-int8: tried percentile-600+bias 0.8967, percentile-600+bias+float1 (stopped after 9 images: cannot "
        "settle), percentile-600+bias+float2 0.9067; kept percentile-600+bias+float2"
    )
