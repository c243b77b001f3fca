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
    assert exports["tflite-int8"]["input_dtype"] == "int8"
    assert all(r["passed"] for r in exports.values())
    rows = {r["format"]: r for r in json.loads((out / "bench.json").read_text())}
    assert set(rows) == {"keras", "keras-predict", "tflite-float32", "tflite-int8", "onnx"}
    assert rows["onnx"]["top1"] >= 0.90 and rows["keras"]["top1"] >= 0.90

    classified = [line for line in result.stdout.splitlines() if ".png: " in line]
    assert len(classified) == 5
    correct = sum(line.split("/")[-2] == line.split(": ")[1].split()[0] for line in classified)
    assert correct >= 4
    assert "demo took" in result.stdout
