"""SIGTERM (as a service manager or CI timeout sends it) stops a real search like Ctrl-C: one line, exit 1, and a
tune.json that `--resume` reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from edgetl.tuning.result import read_tune_file

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 300


def test_sigterm_mid_search_leaves_a_resumable_tune_json(make_digits, tmp_path):
    out = tmp_path / "search"
    command = [
        sys.executable, "-m", "edgetl", "tune", str(make_digits(3)), "--out", str(out), "--weights", "none",
        "--space", "backbone=mobilenetv2;alpha=0.35,0.5,0.75;size=32", "--format", "tflite-float32", "-q",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                state = json.loads((out / "tune.json").read_text())
            except (OSError, ValueError):
                state = None
            if state and any(c["status"] != "pending" for c in state["candidates"]):
                break
            time.sleep(0.5)
        assert process.poll() is None, process.communicate()
        os.kill(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, stdout + stderr
    assert "Traceback" not in stderr
    assert f"continue with `edgetl tune --resume {out}`" in stderr
    state = read_tune_file(out)
    assert not state.finished
    assert state.candidates[0].status == "fits" and state.candidates[0].probe
    assert any(c.status == "pending" for c in state.candidates)
