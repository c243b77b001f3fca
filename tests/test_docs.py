"""The documentation site builds with `mkdocs build --strict`: a broken link, a missing anchor or an API reference
that names nothing fails the build, and so this test."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason='mkdocs and mkdocstrings are not installed: pip install -e ".[docs]"',
)
def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (site / "benchmarks" / "index.html").is_file()
    api_page = (site / "api" / "index.html").read_text()
    for function in ("train", "export", "bench", "resume", "sample_data"):
        assert f'id="edgetl.api.{function}"' in api_page
