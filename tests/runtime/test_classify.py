"""`edgetl classify`: every kind of input, outputs, thresholds, runtime choice and per-file errors."""

import csv
import io
import json
import shutil

import pytest
from click.testing import CliRunner

from edgetl.cli import main
from edgetl.runtime.classify import MissingInput, expand_inputs


def test_expand_inputs_files_folders_and_patterns(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/1.png", "a/deep/2.jpg", "a/notes.txt", "b.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    items = list(
        expand_inputs(
            [str(tmp_path / "b.png"), str(tmp_path / "a"), str(tmp_path / "**" / "*.jpg"), str(tmp_path / "empty")]
            + [str(tmp_path / "zz*.png"), str(tmp_path / "missing.png")]
        )
    )
    paths = [item for item in items if not isinstance(item, MissingInput)]
    assert paths == [
        tmp_path / "b.png",
        tmp_path / "a" / "1.png",
        tmp_path / "a" / "deep" / "2.jpg",
        tmp_path / "a" / "deep" / "2.jpg",
        tmp_path / "missing.png",
    ]
    reasons = [item.reason for item in items if isinstance(item, MissingInput)]
    assert reasons == ["folder holds no image files", "no file matches this pattern"]


def run(*args, stdin=None):
    return CliRunner().invoke(main, ["classify", *[str(a) for a in args]], input=stdin)


@pytest.mark.slow
def test_paths_from_standard_input(exported_run, sample_dir):
    images = sorted((sample_dir / "six").iterdir())[:3]
    stdin = "\n".join(str(p) for p in images) + "\n\n"
    result = run(exported_run / "exports" / "model.onnx", "-", "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["file"] for line in result.output.splitlines()] == [str(p) for p in images]


@pytest.mark.slow
def test_csv_output_with_errors_and_exit_status(exported_run, sample_dir, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    good = sorted((sample_dir / "zero").iterdir())[0]
    result = run(exported_run / "exports" / "model_int8.tflite", good, broken, "--csv", "--top-k", 2)
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [row["file"] for row in rows] == [str(good), str(broken)]
    assert rows[0]["label"] == rows[0]["label_1"] and float(rows[0]["score_1"]) >= float(rows[0]["score_2"])
    assert rows[0]["error"] == "" and "broken.jpg" in rows[1]["error"] and rows[1]["label"] == ""


@pytest.mark.slow
def test_threshold_turns_low_scores_into_unknown(exported_run, sample_dir):
    image = sorted((sample_dir / "one").iterdir())[0]
    model = exported_run / "exports" / "model_float32.tflite"
    # A one-epoch model over ten classes is far from sure of anything: its best score is well under 0.99.
    sure = json.loads(run(model, image, "--json").output)
    assert sure["label"] == sure["top"][0]["label"] and sure["top"][0]["score"] < 0.99
    unsure = json.loads(run(model, image, "--json", "--threshold", 0.99).output)
    assert unsure["label"] == "unknown" and unsure["top"] == sure["top"]
    text = run(model, image, "--threshold", 0.99).output
    assert text.startswith(f"{image}: unknown (best: ")


@pytest.mark.slow
def test_batching_gives_the_same_answers(exported_run, sample_dir):
    model = exported_run / "exports" / "model_int8.tflite"
    one = run(model, sample_dir, "--json", "--batch-size", 1).output
    many = run(model, sample_dir, "--json", "--batch-size", 7).output
    assert len(one.splitlines()) == 90
    first = [json.loads(line) for line in one.splitlines()]
    second = [json.loads(line) for line in many.splitlines()]
    for a, b in zip(first, second, strict=True):
        assert a["file"] == b["file"] and a["label"] == b["label"]
        assert a["top"][0]["score"] == pytest.approx(b["top"][0]["score"], abs=1e-6)


@pytest.mark.slow
def test_runtime_falls_back_to_tensorflow_when_no_light_runtime_imports(exported_run, monkeypatch):
    from edgetl.runtime import litert
    from edgetl.runtime.engine import open_engine

    real = litert.is_available
    monkeypatch.setattr(litert, "is_available", lambda module: module == "tensorflow" and real(module))
    engine = open_engine(exported_run / "exports" / "model_int8.tflite")
    assert engine.runtime.startswith("tensorflow ")
    monkeypatch.setattr(litert, "is_available", real)
    light = open_engine(exported_run / "exports" / "model_int8.tflite")
    assert light.runtime.startswith("ai-edge-litert ")
    import numpy as np

    pixels = np.full((1, 32, 32, 3), 200, np.uint8)
    np.testing.assert_allclose(engine.predict(pixels), light.predict(pixels), atol=1e-6)


@pytest.mark.slow
def test_forced_runtime(exported_run, sample_dir):
    image = sorted((sample_dir / "two").iterdir())[0]
    tflite = exported_run / "exports" / "model_float32.tflite"
    forced = run(tflite, image, "--runtime", "tensorflow", "--json")
    assert forced.exit_code == 0, forced.output
    missing = run(tflite, image, "--runtime", "tflite-runtime")
    assert missing.exit_code == 1
    assert missing.output.startswith("Error: --runtime tflite-runtime cannot be used here")
    assert "pip install tflite-runtime" in missing.output and len(missing.output.splitlines()) == 1
    wrong = run(exported_run / "exports" / "model.onnx", image, "--runtime", "litert")
    assert wrong.exit_code == 1 and "runs on onnxruntime only" in wrong.output


def test_classify_needs_something_to_classify(tmp_path):
    result = run(tmp_path / "model.tflite")
    assert result.exit_code == 2 and "--watch DIR" in result.output


@pytest.mark.slow
def test_a_copied_model_file_is_enough(exported_run, sample_dir, tmp_path):
    """Labels and preprocessing travel inside the file: a lone copy, far from the run, classifies."""
    lone = tmp_path / "board" / "model.tflite"
    lone.parent.mkdir()
    shutil.copy(exported_run / "exports" / "model_int8.tflite", lone)
    result = run(lone, sorted((sample_dir / "eight").iterdir())[0], "--json")
    assert result.exit_code == 0
    labels = (exported_run / "labels.txt").read_text().split()
    assert {entry["label"] for entry in json.loads(result.output)["top"]} <= set(labels)
