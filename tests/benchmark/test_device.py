"""The device bench needs no TensorFlow: every process it starts is run with TensorFlow and friends blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import BLOCKER, HEAVY


def test_bench_package_and_cli_import_nothing_heavy():
    code = (
        "import json, sys\nimport edgetl.cli, edgetl.benchmark, edgetl.benchmark.exported, edgetl.benchmark.remote\n"
        "import edgetl.benchmark.worker\n"
        "import edgetl.benchmark.report, edgetl.benchmark.compare, edgetl.benchmark.gates\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} + ('matplotlib',))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


@pytest.mark.slow
def test_device_bench_runs_where_tensorflow_cannot_be_imported(exported_run, sample_dir, tmp_path):
    (tmp_path / "site").mkdir()
    # sitecustomize runs at the start of every Python process on PYTHONPATH: the blocker reaches the per-file children.
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    source = str(Path(__file__).resolve().parents[2] / "src")
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), source])}
    out = tmp_path / "device.json"
    models = [exported_run / "exports" / name for name in ("model_int8.tflite", "model.onnx")]
    command = [sys.executable, "-m", "edgetl", "bench", *models, "--images", sample_dir, "--runs", 3, "--warmup", 1]
    command += ["--json", out, "--max-p90-ms", 1e6, "--settle"]
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr
    proof = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=environment, timeout=60
    )
    assert "blocked for this test" in proof.stderr  # the blocker was really in force
    rows = json.loads(out.read_text())
    assert [row["format"] for row in rows] == ["tflite-int8", "onnx"]
    for row in rows:
        assert row["images"] == 90 and 0.0 <= row["top1"] <= row["top5"] <= 1.0 and row["runs"] % 3 == 0
        assert row["agreement"] is None and row["latency_ms"]["p50"] > 0 and row["peak_rss_scope"] == "format"
        assert "tensorflow" not in row["runtime"]
    assert "tflite-int8" in result.stdout and "no GPU" in result.stdout.splitlines()[0]


def test_device_bench_needs_images_and_known_labels(exported_run, tmp_path):
    from click.testing import CliRunner

    from edgetl.cli import main

    model = str(exported_run / "exports" / "model_int8.tflite")
    no_images = CliRunner().invoke(main, ["bench", model])
    assert no_images.exit_code == 2 and "model files need --images" in no_images.output
    (tmp_path / "giraffe").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "giraffe" / "g.png")
    unknown = CliRunner().invoke(main, ["bench", model, "--images", str(tmp_path)])
    assert unknown.exit_code == 1 and "giraffe" in unknown.output and "not among the model's labels" in unknown.output
