"""`edgetl train` end to end on tiny data: both stages, bad files, augmentation, array layouts, reports, resume."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import invoke
from tests.training.conftest import SIZE, tiny_args

pytestmark = pytest.mark.slow

FINE_TUNE_LAYERS = 10


def fresh_backbone(weights: Path):
    from edgetl.models.backbones import get_backbone
    from edgetl.models.classifier import build_backbone

    return build_backbone(get_backbone("mobilenetv2"), SIZE, 0.35, str(weights))


def test_two_stages_skip_a_bad_file_and_report(digits, backbone_weights, tmp_path, caplog):
    import keras

    data = tmp_path / "data"
    shutil.copytree(digits, data)
    (data / "zero" / "broken.png").write_bytes(b"\x89PNG not an image")
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        result = invoke(
            "train", data, "--out", run, *tiny_args(backbone_weights), "--fine-tune-epochs", 1,
            "--fine-tune-layers", FINE_TUNE_LAYERS, "--hidden-units", 8, "--class-weight", "balanced",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable image file" in result.output
    assert "(stage 1 on cached features)" in result.output
    assert any("broken.png" in record.getMessage() for record in caplog.records)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["skipped_count"] == 1 and "broken.png" in metrics["skipped"][0]
    assert metrics["feature_cache"] is True and metrics["epochs"] == {"stage1": 1, "stage2": 1}
    assert metrics["cache"] == "memory"  # --cache auto, for a set this small
    assert set(metrics["stage_seconds"]) == {"stage1", "stage2"} and min(metrics["stage_seconds"].values()) > 0
    history = json.loads((run / "history.json").read_text())
    assert len(history["stage1"]["loss"]) == 1 and len(history["stage2"]["val_loss"]) == 1
    assert not (run / "checkpoint").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert (run / "model.keras").stat().st_mode & 0o777 == 0o666 & ~umask  # readable like the run's other files

    # Stage 2 touched only the top of the backbone, and no BatchNorm statistic or weight.
    model = keras.saving.load_model(run / "model.keras")
    assert model.get_layer("hidden").units == 8
    trained = model.get_layer("backbone").layers
    original = fresh_backbone(backbone_weights).layers
    changed = set()
    for position, (after, before) in enumerate(zip(trained, original, strict=True)):
        same = all(np.array_equal(a, b) for a, b in zip(after.get_weights(), before.get_weights(), strict=True))
        if isinstance(after, keras.layers.BatchNormalization) or position < len(trained) - FINE_TUNE_LAYERS:
            assert same, after.name
        elif not same:
            changed.add(after.name)
    assert "Conv_1" in changed

    # Reports: per-class figures summing to the test set, and real PNG pictures.
    report = json.loads((run / "report" / "classification_report.json").read_text())
    labels = (run / "labels.txt").read_text().split()
    assert set(labels) <= set(report) and {"macro avg", "weighted avg"} <= set(report)
    assert sum(report[name]["support"] for name in labels) == metrics["images"]["test"]
    assert abs(report["macro avg"]["f1-score"] - metrics["macro_f1"]) < 1e-9
    text = (run / "report" / "classification_report.txt").read_text()
    assert "precision" in text and "weighted avg" in text
    for name in ("confusion_matrix.png", "training_curves.png", "test_predictions.png"):
        with Image.open(run / "report" / name) as picture:
            assert picture.format == "PNG" and picture.width > 200 and picture.height > 200


def test_npz_with_augmentation_keeps_it_out_of_the_model(digits, backbone_weights, tmp_path, caplog):
    import keras

    from edgetl.data.pipeline import decode_subset
    from edgetl.run import RunDir
    from edgetl.runtime.image import load_image

    files = {folder.name: sorted(folder.iterdir()) for folder in sorted(digits.iterdir())}
    x_train, y_train, x_test, y_test = [], [], [], []
    for label, name in enumerate(files):
        for index, file in enumerate(files[name]):
            (x_test if index == 0 else x_train).append(load_image(file, (SIZE, SIZE)))
            (y_test if index == 0 else y_train).append(label)
    path = tmp_path / "digits.npz"
    np.savez(path, X_train=np.stack(x_train), y_train=y_train, X_test=np.stack(x_test), y_test=y_test)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        result = invoke("train", path, "--out", run, *tiny_args(backbone_weights), "--augment", "--rotation", 0.2)
    assert result.exit_code == 0, result.output
    assert "npz layout" in result.output and "cached features" not in result.output
    assert any("cannot be cached" in record.getMessage() for record in caplog.records)
    config = json.loads((run / "config.json").read_text())
    assert config["layout"] == "npz" and config["augment"] is True and config["augmentation"]["rotation"] == 0.2

    def all_layers(layer):
        yield layer
        for inner in getattr(layer, "layers", []):
            yield from all_layers(inner)

    model = keras.saving.load_model(run / "model.keras")
    classes = {type(layer).__name__ for layer in all_layers(model)}
    assert not {name for name in classes if name.startswith("Random")}
    assert "augmentation" not in {layer.name for layer in model.layers}

    # export and bench read files: the test images and a training sample are PNGs in the run.
    split = RunDir(run).read_split()
    assert len(split.test) == 10 and 0 < len(split.train) <= 50
    decoded = decode_subset(split.test, SIZE)
    assert not decoded.skipped and list(decoded.labels) == [e.label for e in split.test]
    assert all(str(e.path).startswith(str(run / "data")) for e in split.test + split.train)


def test_no_feature_cache_runs_stage1_through_the_backbone(digits, backbone_weights, tmp_path, caplog):
    """Here the decoded images stream from a file on disk, written once by the check of every file."""
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        result = invoke(
            "train", digits, "--out", run, *tiny_args(backbone_weights), "--no-feature-cache", "--cache", "disk"
        )
    assert result.exit_code == 0, result.output
    assert "cached features" not in result.output and "stage 1" in result.output
    assert not any("cannot be cached" in record.getMessage() for record in caplog.records)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["feature_cache"] is False and list(metrics["stage_seconds"]) == ["stage1"]
    assert metrics["cache"] == "disk" and not (run / "cache").exists()  # the cache file lives while the run trains
    config = json.loads((run / "config.json").read_text())
    assert config["feature_cache"] is False and config["cache"] == "disk"


def test_overwrite_leaves_nothing_of_the_previous_model(digits, backbone_weights, tmp_path):
    run = tmp_path / "run"
    assert invoke("train", digits, "--out", run, *tiny_args(backbone_weights)).exit_code == 0
    # What `edgetl export` would have added for the first model.
    (run / "exports").mkdir()
    (run / "exports" / "model_float32.tflite").write_bytes(b"old model")
    (run / "exports.json").write_text('[{"format": "tflite-float32", "path": "exports/model_float32.tflite"}]')
    first_model = (run / "model.keras").stat().st_mtime_ns

    result = invoke("train", digits, "--out", run, *tiny_args(backbone_weights), "--overwrite", "--dropout", 0.3)
    assert result.exit_code == 0, result.output
    assert not (run / "exports").exists() and not (run / "exports.json").exists()
    assert (run / "model.keras").stat().st_mtime_ns != first_model
    assert json.loads((run / "config.json").read_text())["dropout"] == 0.3
    assert (run / "report" / "confusion_matrix.png").is_file() and (run / "metrics.json").is_file()


def test_interrupted_run_resumes_from_the_last_epoch(digits, backbone_weights, tmp_path, monkeypatch):
    from edgetl.training import callbacks

    save = callbacks.save_checkpoint

    def save_then_interrupt(run, model, stage, epoch, history, **saved):
        state = save(run, model, stage, epoch, history, **saved)
        if (stage, epoch) == (1, 1):
            raise KeyboardInterrupt
        return state

    run = tmp_path / "run"
    monkeypatch.setattr(callbacks, "save_checkpoint", save_then_interrupt)
    # Stage 1 on cached features keeps this test fast; stage 2 resumes through the same checkpoint code.
    args = ("train", digits, "--out", run, *tiny_args(backbone_weights), "--epochs", 3, "--patience", 5)
    interrupted = invoke(*args)
    assert interrupted.exit_code == 1
    assert "stage 1 epoch 1 is saved" in interrupted.output and f"--resume {run}" in interrupted.output
    assert not (run / "model.keras").exists()
    assert not list(run.rglob(".*tmp")) and not list(run.rglob(".partial-*"))
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert (state["stage"], state["epoch"]) == (1, 1) and len(state["history"]["stage1"]["loss"]) == 1
    assert (run / "checkpoint" / state["weights"]).is_file() and state["best_weights"] == state["weights"]
    assert state["callbacks"]["early_stopping"]["best_epoch"] == 0 and state["callbacks"]["early_stopping"]["wait"] == 0
    with np.load(run / "checkpoint" / state["weights"]) as arrays:
        assert "optimizer_0" in arrays.files and any(name.startswith("arr_") for name in arrays.files)
        assert int(arrays["optimizer_0"]) == -(-len(json.loads((run / "split.json").read_text())["train"]) // 16)
    monkeypatch.setattr(callbacks, "save_checkpoint", save)

    again = invoke(*args)
    assert again.exit_code == 1 and "interrupted run" in again.output and "--resume" in again.output
    resumed = invoke("train", "--resume", run, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    history = json.loads((run / "history.json").read_text())
    assert len(history["stage1"]["loss"]) == 3 and history["stage2"] == {}
    assert (run / "model.keras").is_file() and not (run / "checkpoint").exists()
    finished = invoke("train", "--resume", run)
    assert finished.exit_code == 1 and "nothing to resume" in finished.output


def test_cli_refusals(digits, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "tfds:surely_not_installed_here", "--out", out, "--weights", "none")
    assert result.exit_code == 1 and ("tensorflow-datasets" in result.output or "cannot load" in result.output)
    result = invoke("train", digits, "--out", out, "--weights", "none", "--fine-tune-epochs", 1)
    assert result.exit_code == 1 and "needs a pretrained backbone" in result.output
    result = invoke("train", digits)
    assert result.exit_code == 2 and "--out" in result.output
    assert not out.exists()
