"""`make demo` end to end: the demo's model must really learn, in every format."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_learns_and_every_format_keeps_up(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "demo"
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    metrics = json.loads((out / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.90
    exports = {r["format"]: r for r in json.loads((out / "run" / "exports.json").read_text())}
    assert exports["tflite-int8"]["top1"] >= 0.90
    assert exports["tflite-int8"]["input_dtype"] == "uint8"
    assert all(r["passed"] for r in exports.values())
    rows = {r["format"]: r for r in json.loads((out / "bench.json").read_text())}
    assert set(rows) == {"keras", "keras-predict", "tflite-float32", "tflite-int8", "onnx", "onnx-int8"}
    assert rows["onnx"]["top1"] >= 0.90 and rows["keras"]["top1"] >= 0.90

    classified = [line for line in result.stdout.splitlines() if ".png: " in line]
    assert len(classified) == 5
    correct = sum(line.split("/")[-2] == line.split(": ")[1].split()[0] for line in classified)
    assert correct >= 4
    assert "demo took" in result.stdout
    report = out / "run" / "report" / "index.html"  # the demo ends with the page's path
    assert result.stdout.splitlines()[-1] == str(report) and report.is_file()

    check_classify_matches_keras(out / "run", env)


def check_classify_matches_keras(run: Path, env: dict) -> None:
    """classify's probabilities, read from its JSON output, against Keras' own on the same test images."""
    import numpy as np

    from edgetl.exporting.int8 import CONFIDENT_AGREEMENT_TARGET
    from edgetl.run import RunDir
    from edgetl.runtime.image import load_images

    split = json.loads((run / "split.json").read_text())
    images = [Path(split["root"]) / relative for relative, _ in split["test"]]
    labels = (run / "labels.txt").read_text().split()
    pixels, kept, _ = load_images(images, (48, 48))
    assert len(kept) == len(images)
    keras_probabilities = RunDir(run).load_model().predict(pixels.astype("float32"), verbose=0)

    def classify(filename: str) -> np.ndarray:
        result = subprocess.run(
            ["edgetl", "classify", str(run / "exports" / filename), *map(str, images), "--json", "--top-k", "10"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [row["file"] for row in rows] == [str(p) for p in images]
        probabilities = np.zeros((len(rows), len(labels)))
        for i, row in enumerate(rows):
            for entry in row["top"]:
                probabilities[i, labels.index(entry["label"])] = entry["score"]
        return probabilities

    for filename in ("model_float32.tflite", "model.onnx"):
        np.testing.assert_allclose(classify(filename), keras_probabilities, atol=1e-4, err_msg=filename)
    int8 = classify("model_int8.tflite")
    keras_top1 = keras_probabilities.argmax(axis=1)
    ordered = np.sort(keras_probabilities, axis=1)
    confident = ordered[:, -1] - ordered[:, -2] > 0.3  # int8 flips near-ties, and almost never anything else
    assert confident.sum() >= 150
    # The ladder's own promise, on the whole test split: agreement on the images Keras is sure of.
    assert np.mean(int8.argmax(axis=1)[confident] == keras_top1[confident]) >= CONFIDENT_AGREEMENT_TARGET
    assert np.mean(int8.argmax(axis=1) == keras_top1) >= 0.95
