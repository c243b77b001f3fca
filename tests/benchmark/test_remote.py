"""`edgetl bench --remote` against an SSH server on 127.0.0.1 (tests/benchmark/conftest.py), the board's python
being this one, so the whole path runs: preflight, copy, the device bench from a zipped edgetl, fetch, clean up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import invoke


def ssh_flags(options) -> list[str]:
    return [flag for option in options for flag in ("--ssh-option", option)]


@pytest.mark.slow
def test_remote_rows_join_the_table(exported_run, loopback_ssh, tmp_path):
    host, options = loopback_ssh
    out = tmp_path / "remote.json"
    result = invoke(
        "bench", exported_run, "--runs", 3, "--warmup", 1, "--threads", 1, "--remote", host,
        "--remote-python", sys.executable, "--remote-images", 6, "--json", out, *ssh_flags(options),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    remote = [row for row in rows if row["host"] == host]
    local = {row["format"]: row for row in rows if row["host"] == "local"}
    assert [row["format"] for row in remote] == ["tflite-float32", "tflite-int8", "onnx"]
    for row in remote:
        assert row["device"] == local["keras"]["device"]  # the board's uname -m
        assert row["images"] == 6 and row["agreement"] is not None and 0.0 <= row["agreement"] <= 1.0
        assert row["size_bytes"] == local[row["format"]]["size_bytes"] and row["latency_ms"]["p50"] > 0
        # It ran from the board's temporary directory, which is gone afterwards.
        remote_dir = Path(row["path"]).parents[1]
        assert remote_dir.name.startswith("edgetl-bench.") and not remote_dir.exists()
    # Rows from several hosts: the table shows the host column even without --wide.
    assert any(line.split()[:2] == ["tflite-int8", host] for line in result.output.splitlines())


@pytest.mark.slow
def test_remote_errors_are_one_line_each(exported_run, loopback_ssh, tmp_path):
    host, options = loopback_ssh
    model = exported_run / "exports" / "model_int8.tflite"
    images = tmp_path / "images"
    (images / "five").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (32, 32), "white").save(images / "five" / "a.png")
    common = ["bench", model, "--images", images, "--runs", 2, "--warmup", 0, "--remote", host]

    no_python = invoke(*common, "--remote-python", "/nonexistent/python3", *ssh_flags(options))
    assert no_python.exit_code == 1
    assert f"Error: {host}: no /nonexistent/python3 on the board" in no_python.output

    bare = tmp_path / "bare-python"  # a python that sees no site-packages: no numpy, pillow or LiteRT
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    missing = invoke(*common, "--remote-python", bare, *ssh_flags(options))
    assert missing.exit_code == 1
    line = next(line for line in missing.output.splitlines() if line.startswith("Error:"))
    assert "lacks numpy, PIL, ai_edge_litert/tflite_runtime" in line and "edgetl[device]" in line

    elsewhere = [option for option in options if not option.startswith("Port=")] + ["Port=9"]
    unreachable = invoke(*common, "--remote-python", sys.executable, *ssh_flags(elsewhere))
    assert unreachable.exit_code == 1
    assert f"Error: {host}: cannot connect over SSH" in unreachable.output
    # The local rows are still printed above the errors.
    assert "tflite-int8" in unreachable.output


class FakeBoard:
    """Stands in for `ssh`: answers the preflight with the given facts and records every remote command."""

    def __init__(self, answer: str):
        self.answer = answer
        self.commands: list[str] = []

    def __call__(self, host, command, ssh, timeout=None):
        import subprocess

        self.commands.append(command)
        output = self.answer if "mktemp" in command else ""
        return subprocess.CompletedProcess(["ssh", host, command], 0, output, "")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("python=3.11\nmissing=\ndir=/tmp/edgetl-bench.AbC123\narch=aarch64\nfree_kb=100\n", "only 0 MB free in"),
        ("python=3.7\nmissing=\ndir=/tmp/edgetl-bench.AbC123\narch=armv7l\nfree_kb=9999999\n", "is Python 3.7"),
        ("no-python\n", "no python3 on the board"),
    ],
)
def test_board_without_space_or_a_recent_python_is_refused_and_cleaned(monkeypatch, tmp_path, answer, message):
    from edgetl.benchmark import remote
    from edgetl.benchmark.settings import BenchSettings

    board = FakeBoard(answer)
    monkeypatch.setattr(remote, "_run_ssh", board)
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\0" * 4096)
    with pytest.raises(remote.RemoteError, match=message) as caught:
        remote.bench_remote("pi@board", [("tflite", model)], [], BenchSettings(), [None], remote.SshSettings())
    assert str(caught.value).startswith("pi@board: ") and "\n" not in str(caught.value)
    if "dir=" in answer:  # the temporary directory is removed, with its name quoted
        assert board.commands[-1] == "rm -rf -- /tmp/edgetl-bench.AbC123"
    with pytest.raises(remote.RemoteError, match="expected user@host"):
        remote.bench_remote("-oProxyCommand=evil", [], [], BenchSettings(), [None], remote.SshSettings())


def test_preflight_quotes_the_interpreter():
    from edgetl.benchmark.remote import _preflight_script

    script = _preflight_script("/opt/my python/bin/python3; rm -rf ~", {".tflite"})
    assert "'/opt/my python/bin/python3; rm -rf ~'" in script
    assert "ai_edge_litert" in script and "onnxruntime" not in script


def test_a_board_needs_the_python_the_package_requires():
    import tomllib

    from edgetl.benchmark.remote import MIN_PYTHON

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    lowest = next(part for part in project["requires-python"].split(",") if part.startswith(">="))
    assert lowest == ">=" + ".".join(str(part) for part in MIN_PYTHON)
