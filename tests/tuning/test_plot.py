"""The Pareto plot and the summary `edgetl tune` prints, from a tune.json state (no TensorFlow)."""

from __future__ import annotations

from edgetl.tuning.result import Constraints, Final, TuneFile
from edgetl.tuning.session import TuneResult, write_plot
from tests.tuning.test_result import measured, options, record


def finished_state(agreement: float) -> TuneFile:
    fast, winner, slow = record(32, 0.7, 1.0), record(48, 0.8, 2.0), record(96, 0.9, 40.0)
    fast.probe = [measured(1.0, size_mb=0.5)]
    winner.final = Final(
        run="winner", val_accuracy=0.82, test_accuracy=0.8, agreement=agreement, measurements=[measured(2.2, 3.0)]
    )
    winner.status = "winner"
    slow.drop("probe", "p50 40.00 ms > 30 ms on local (x86-64 VNNI)")
    return TuneFile(
        data="/d", constraints=Constraints(max_latency_ms=30), options=options(), cpu="x86-64 VNNI",
        candidates=[fast, winner, slow], winner=winner.name, finished=True, seconds=125.0,
    )  # fmt: skip


def test_the_plot_is_an_svg_file_with_the_budget_line_and_the_size_markers(tmp_path):
    plot = write_plot(finished_state(0.99), tmp_path)
    svg = plot.read_text()
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert svg.count('class="limit"') == 1  # the latency budget
    for legend in ("winner", "Pareto front", "1-4 MB", "&lt; 1 MB"):
        assert legend in svg
    assert "mobilenetv2-0.35-48px: 0.8200, 3.00 MB" in svg  # the winner's tooltip: its trained file


def test_the_summary_names_the_winner_its_figures_and_a_missed_agreement_gate(tmp_path):
    good = TuneResult(tmp_path, finished_state(0.99), tmp_path / "pareto.svg").summary()
    assert any(
        line.startswith("winner mobilenetv2-0.35-48px: val acc 0.8200, test acc 0.8000, p50 2.20 ms") for line in good
    )
    assert any("search took 2.1 min" in line for line in good)
    assert not any(line.startswith("note:") for line in good)
    weak = TuneResult(tmp_path, finished_state(0.8), tmp_path / "pareto.svg").summary()
    assert any(line.startswith("note: its tflite-int8 file agrees with Keras on 0.8000") for line in weak)
