"""Synthetic run directories, written with edgetl's own writers (Split, test predictions, bench rows), so each
section of the page can be tested without training a model."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetl.benchmark.result import BenchRow
from edgetl.benchmark.timing import Latency
from edgetl.data.folder import Example
from edgetl.data.split import Split
from edgetl.run import BENCH_RESULTS, RunDir
from edgetl.runtime.metadata import NORMALIZATIONS, ModelMetadata
from edgetl.training.reports import CLASSIFICATION_REPORT, TEST_PREDICTIONS, predictions_json

CLASSES = ["cat", "dog", "fox"]


@dataclass
class SyntheticRun:
    path: Path
    class_names: list[str]
    test_files: list[str]
    wrong: list[str] = field(default_factory=list)  # test files Keras gets wrong
    flipped: dict[str, list[str]] = field(default_factory=dict)  # format -> flipped test files


def write_image(path: Path, seed: int, side: int = 96, noise: bool = False) -> None:
    rng = np.random.default_rng(seed)
    if noise:  # the worst case for JPEG thumbnails
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    else:
        pixels = np.zeros((side, side, 3), np.uint8)
        pixels[..., :] = rng.integers(0, 256, 3, dtype=np.uint8)
        pixels[side // 4 : side // 2, side // 4 : 3 * side // 4] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def probabilities_for(label: int, classes: int, right: bool, rng: random.Random) -> np.ndarray:
    top = label if right else (label + 1) % classes
    row = np.full(classes, 0.0)
    row[top] = rng.uniform(0.4, 0.95)
    rest = [c for c in range(classes) if c != top]
    share = (1 - row[top]) / len(rest)
    for c in rest:
        row[c] = share * rng.uniform(0.5, 1.5)
    return row / row.sum()


def top3(row: np.ndarray, names: list[str]) -> list[list]:
    order = np.argsort(-row, kind="stable")[:3]
    return [[names[c], round(float(row[c]), 6)] for c in order]


def bench_row(fmt: str, threads: int | None, host: str, p50: float, top1: float, device: str = "x86_64") -> dict:
    return BenchRow(
        format=fmt, path=f"exports/{fmt}", size_bytes=100_000, top1=top1, top5=1.0, agreement=0.98,
        max_probability_diff=0.01, latency=Latency(p50, p50 * 1.2, p50 * 1.5, p50 * 1.1, 0.1, 100),
        throughput_ips=1000 / p50, batch=32, threads=threads, runtime="litert 1.0", provider="", device=device,
        load_ms=10.0, peak_rss_bytes=50_000_000, peak_rss_scope="format", images=30, host=host,
        fingerprint={"host": "desktop"},
    ).to_dict()  # fmt: skip


def make_run(
    root: Path,
    class_names: list[str] = CLASSES,
    per_class: int = 6,
    file_names=None,  # (class index, i) -> file name
    noise: bool = False,
    wrong_every: int = 3,
    flip_every: int = 2,
    formats: tuple[str, ...] = ("tflite-int8", "onnx-int8"),
    bench: bool = True,
    predictions: bool = True,
) -> SyntheticRun:
    """A finished run with `per_class` train, validation and test images per class; every `wrong_every`-th test
    image is one Keras gets wrong, every `flip_every`-th one flipped by each export."""
    rng = random.Random(0)
    data, run_path = root / "data", root / "run"
    run = RunDir(run_path)
    run_path.mkdir(parents=True)
    subsets: dict[str, list[Example]] = {"train": [], "validation": [], "test": []}
    seed = 0
    for label in range(len(class_names)):
        for subset in subsets:
            for i in range(per_class):
                name = file_names(label, i) if file_names else f"{subset}_{i}.png"
                path = data / f"class{label}" / subset / name
                write_image(path, seed, noise=noise)
                seed += 1
                subsets[subset].append(Example(path, label))
    split = Split(data, list(class_names), **subsets)
    run.split.write_text(split.to_json())
    metadata = ModelMetadata(list(class_names), (32, 32), NORMALIZATIONS["tf"], backbone="mobilenetv2")
    run.preprocessing.write_text(metadata.to_json())
    run.config.write_text(json.dumps({"backbone": "mobilenetv2", "image_size": 32, "epochs": 3}))
    history = {
        "stage1": {"loss": [1.2, 0.8, 0.6], "accuracy": [0.5, 0.7, 0.8], "val_loss": [1.1, 0.9, 0.7],
                   "val_accuracy": [0.55, 0.65, 0.75]},
        "stage2": {"loss": [0.5, 0.4], "accuracy": [0.85, 0.9], "val_loss": [0.6, 0.55], "val_accuracy": [0.8, 0.82]},
    }  # fmt: skip
    run.history.write_text(json.dumps(history))
    skipped = [f"{data}/class0/broken.png: cannot be decoded as an image (truncated)"]
    run.metrics.write_text(
        json.dumps(
            {"test_accuracy": 0.75, "test_loss": 0.6, "macro_f1": 0.74, "weighted_f1": 0.74, "layout": "folder",
             "epochs": {"stage1": 3, "stage2": 2}, "stage_seconds": {"stage1": 12.5, "stage2": 30.25},
             "cache": "memory", "feature_cache": True, "skipped_count": 1, "skipped": skipped}
        )
    )  # fmt: skip
    test = subsets["test"]
    files = [str(example.path) for example in test]
    labels = np.array([example.label for example in test])
    keras = np.stack(
        [probabilities_for(e.label, len(class_names), i % wrong_every != 0, rng) for i, e in enumerate(test)]
    )
    synthetic = SyntheticRun(run_path, list(class_names), files)
    synthetic.wrong = [files[i] for i in range(len(files)) if keras[i].argmax() != labels[i]]
    report = {name: {"precision": 0.7, "recall": 0.8, "f1-score": 0.75, "support": per_class} for name in class_names}
    report["accuracy"] = 0.75
    report["macro avg"] = {"precision": 0.7, "recall": 0.8, "f1-score": 0.75, "support": len(files)}
    run.report_dir.mkdir()
    (run.report_dir / CLASSIFICATION_REPORT).write_text(json.dumps(report))
    if predictions:
        (run.report_dir / TEST_PREDICTIONS).write_text(predictions_json(files, labels, keras, list(class_names)))
    records = []
    for position, fmt in enumerate(formats):
        flipped = [i for i in range(len(files)) if (i + position) % flip_every == 0]
        synthetic.flipped[fmt] = [files[i] for i in flipped]
        images = []
        for i in flipped:
            moved = np.roll(keras[i], 1)
            images.append(
                {"file": files[i], "label": class_names[labels[i]], "keras_top": top3(keras[i], class_names),
                 "export_top": top3(moved, class_names)}
            )  # fmt: skip
        records.append(
            {"format": fmt, "path": f"exports/model_{position}.tflite", "size_bytes": 123_456, "sha256": "0" * 64,
             "input_dtype": "uint8", "output_dtype": "uint8", "images": len(files),
             "agreement": 1 - len(flipped) / len(files), "top1": 0.7, "keras_top1": 0.75,
             "max_probability_diff": 0.3, "flipped_files": synthetic.flipped[fmt], "min_agreement": 0.9,
             "passed": position == 0, "per_class_accuracy_change": {class_names[0]: -0.1, class_names[1]: 0.0},
             "operators": 70, "int8_op_share": 0.97, "float_ops": {"LOGISTIC": 1}, "calibration_images": 20,
             "quantizer": "converter", "problems": [] if position == 0 else ["not integer-only: LOGISTIC x1"],
             "confident_images": 10, "confident_agreement": 0.9, "mean_probability_diff": 0.05,
             "recipe": "percentile-20+bias", "float_layers": ["block_1_depthwise"],
             "attempts": [
                 {"recipe": "percentile-20+bias", "method": "percentile", "calibration_images": 20,
                  "bias_correction": True, "float_layers": [], "agreement": 0.8, "confident_agreement": 0.85,
                  "mean_probability_diff": 0.06, "size_bytes": 120_000, "passed": False, "seconds": 3.5},
                 {"recipe": "percentile-20+bias+float0", "method": "percentile", "calibration_images": 20,
                  "bias_correction": True, "float_layers": ["block_2_depthwise"], "agreement": 0.75,
                  "confident_agreement": 0.75, "mean_probability_diff": 0.07, "size_bytes": 121_000,
                  "passed": None, "seconds": 0.2, "images": 4},
                 {"recipe": "percentile-20+bias+1 float", "method": "percentile", "calibration_images": 20,
                  "bias_correction": True, "float_layers": ["block_1_depthwise"], "agreement": 0.9,
                  "confident_agreement": 0.9, "mean_probability_diff": 0.05, "size_bytes": 123_456,
                  "passed": True, "seconds": 4.0},
             ],
             "runtimes": ["LiteRT"], "flipped_images": images, "target": "portable", "saturates_on": [],
             "verified_on": [
                 {"runtime": "ai-edge-litert 2.3.0", "options": "default", "cpu": "x86-64 AVX2", "host": "",
                  "images": len(files), "agreement": 0.9, "top1": 0.7, "confident_agreement": 0.9},
                 {"runtime": "ai-edge-litert 2.3.0", "options": "default", "cpu": "arm64", "host": "pi@board",
                  "images": 10, "agreement": 0.8, "top1": 0.7, "confident_agreement": None},
             ]}
        )  # fmt: skip
    run.exports_index.write_text(json.dumps(records))
    if bench:
        rows = [
            bench_row("keras", None, "local", 5.0, 0.75),
            bench_row("tflite-int8", 1, "local", 1.5, 0.7),
            bench_row("tflite-int8", 2, "local", 1.0, 0.7),
            bench_row("tflite-int8", 4, "pi@board", 3.0, 0.7, device="aarch64"),
        ]
        run.bench_dir.mkdir()
        (run.bench_dir / BENCH_RESULTS).write_text(json.dumps(rows))
    return synthetic


@pytest.fixture
def synthetic_run(tmp_path) -> SyntheticRun:
    return make_run(tmp_path)
