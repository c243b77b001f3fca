"""A tiny search end to end through the CLI: two candidates, one too big for the budget, one epoch, and the winner
used as any run is."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgetl.cli import main
from edgetl.run import RunDir
from edgetl.runtime.cpu import cpu_class

pytestmark = pytest.mark.slow

# Width 1.0 makes a file several times the size of width 0.35's: file sizes do not vary from run to run as latencies
# do, so the size budget drops it for certain.
SPACE = "backbone=mobilenetv2;alpha=0.35,1.0;size=32"


def edgetl(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_tiny_search_ends_with_an_ordinary_run_directory(make_digits, tmp_path):
    data = make_digits(6)
    out = tmp_path / "search"
    # Float32 keeps the finalist's export to one verified conversion; the probes are the same code for any format.
    result = edgetl(
        "tune", data, "--out", out, "--space", SPACE, "--weights", "none", "--epochs", "1", "--finalists", "1",
        "--format", "tflite-float32", "--max-latency-ms", "1000", "--max-size-mb", "2", "--threads", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "winner mobilenetv2-0.35-32px" in result.output

    state = json.loads((out / "tune.json").read_text())
    assert [c["name"] for c in state["candidates"]] == ["mobilenetv2-0.35-32px", "mobilenetv2-1-32px"]
    assert state["finished"] and state["cpu"] == cpu_class()
    for candidate in state["candidates"]:
        (figure,) = candidate["probe"]
        assert figure["host"] == "local" and figure["cpu"] == cpu_class() and figure["threads"] == 1
        assert figure["p50_ms"] > 0 and figure["size_bytes"] > 0
    winner, too_big = state["candidates"]
    assert too_big["status"] == "dropped" and too_big["dropped_at"] == "probe" and too_big["rungs"] == []
    assert too_big["reason"].startswith("size ") and too_big["reason"].endswith(" MB > 2 MB")
    assert winner["status"] == "winner" and winner["rungs"][0]["epochs"] == 1
    assert state["winner"] == winner["name"] and winner["final"]["run"] == "winner"
    assert (out / "pareto.svg").read_text().startswith("<svg")

    run = RunDir(out / "winner")
    run.require_trained()
    assert run.read_config().image_size == winner["image_size"]
    assert (run.exports_dir / "model_float32.tflite").is_file()
    exported = edgetl("export", run.path, "--formats", "tflite-dynamic", "--no-report")
    assert exported.exit_code == 0, exported.output
    classified = edgetl("classify", run.exports_dir / "model_dynamic.tflite", data / "seven", "--json")
    assert classified.exit_code == 0, classified.output
    assert len(classified.output.splitlines()) == len(list((data / "seven").iterdir()))

    again = edgetl("tune", "--resume", out)  # a finished search only prints its table again
    assert again.exit_code == 0 and "winner " + winner["name"] in again.output
