"""The command around the search, with fake steps in place of TensorFlow: what it prints when nothing fits."""

from __future__ import annotations

from click.testing import CliRunner

from edgetl.cli import main
from edgetl.tuning import session
from tests.tuning.test_search import FakeSteps


class FakeRealSteps:
    def __init__(self, state, out) -> None:
        self.fake = FakeSteps()

    def steps(self):
        return self.fake.steps()


def test_a_budget_no_candidate_meets_ends_with_the_table_of_what_was_measured(make_digits, tmp_path, monkeypatch):
    monkeypatch.setattr(session, "RealSteps", FakeRealSteps)
    out = tmp_path / "search"
    space = "backbone=mobilenetv2;alpha=0.35,0.5;size=32,48"
    result = CliRunner().invoke(
        main, ["tune", str(make_digits(3)), "--out", str(out), "--space", space, "--weights", "none",
               "--max-latency-ms", "0.01"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Error: no candidate meets p50 <= 0.01 ms; what was measured:"
    assert len([line for line in lines if "dropped (probe): p50 " in line]) == 4
    assert (out / "tune.json").is_file() and (out / "pareto.svg").is_file()
