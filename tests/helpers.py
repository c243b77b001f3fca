"""Helpers the test modules share: running the CLI, reading exports.json, and Python processes in which TensorFlow
and friends cannot be imported (as on a board without them)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from edgetl.cli import main

# What the device side must never import.
HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx")

# An import hook that makes the HEAVY packages impossible to import. Prepended to `python -c` code, or written as
# a sitecustomize.py on PYTHONPATH so that it reaches every child process too.
BLOCKER = f"""
import importlib.abc, sys
HEAVY = {HEAVY!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError("blocked for this test: " + name)
sys.meta_path.insert(0, Block())
"""


def invoke(*args):
    """`edgetl ARGS...` in this process; every argument is turned into a string, as a shell would pass it."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def records(folder: Path) -> dict[str, dict]:
    """exports.json of a run (or an outside model's output folder), by format."""
    return {r["format"]: r for r in json.loads((Path(folder) / "exports.json").read_text())}


def export_record(name: str, filename: str, payload: bytes) -> dict:
    """The fields every exports.json record must have, for a file `exports/FILENAME` holding `payload`."""
    return {
        "format": name,
        "path": f"exports/{filename}",
        "size_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "passed": True,
    }


def run_python(code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh Python process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
