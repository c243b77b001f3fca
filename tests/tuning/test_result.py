"""Constraints, the Pareto front, the table, and tune.json read back (and refused when damaged)."""

from __future__ import annotations

import json

import pytest

from edgetl.errors import ModelFileError
from edgetl.tuning.result import (
    TUNE_FILE,
    CandidateRecord,
    Constraints,
    Final,
    Measurement,
    Rung,
    TuneFile,
    TuneOptions,
    pareto_front,
    read_tune_file,
    tune_table,
)
from edgetl.tuning.space import Candidate


def measured(p50: float, size_mb: float = 1.0, host: str = "local", cpu: str = "x86-64 VNNI", rss_mb: float = 50):
    return Measurement(
        host=host,
        cpu=cpu,
        runtime="ai-edge-litert",
        threads=1,
        p50_ms=p50,
        p90_ms=p50 * 1.2,
        peak_rss_bytes=int(rss_mb * 2**20),
        size_bytes=int(size_mb * 2**20),
    )


def record(name_size: int, accuracy: float | None, p50: float) -> CandidateRecord:
    entry = CandidateRecord.of(Candidate("mobilenetv2", 0.35, name_size))
    entry.probe = [measured(p50)]
    if accuracy is not None:
        entry.rungs = [Rung(epochs=1, val_accuracy=accuracy, seconds=1.0)]
    entry.status = "fits"
    return entry


def options(**changes) -> TuneOptions:
    values = dict(
        format="tflite-int8", threads=None, remotes=[], ssh_options=[], remote_python="python3", space="",
        budget_minutes=10.0, epochs=4, fine_tune_epochs=0, weights="none", finalists=2, eta=2, seed=1,
    )  # fmt: skip
    return TuneOptions(**{**values, **changes})


def test_constraints_name_each_limit_and_place_exceeded():
    limits = Constraints(max_latency_ms=10, percentile="p90", max_size_mb=2, max_memory_mb=100)
    here, board = measured(5.0, 3.0), measured(9.0, 3.0, host="pi@board", cpu="arm64", rss_mb=150)
    reasons = limits.violations([here, board])
    assert reasons == [
        "size 3.00 MB > 2 MB",
        "p90 10.80 ms > 10 ms on pi@board (arm64)",
        "memory 150.0 MB > 100 MB on pi@board (arm64)",
    ]
    assert Constraints().violations([here, board]) == []
    assert Constraints(max_latency_ms=10).violations([here, board]) == []  # p50 9 ms fits on both


def test_the_pareto_front_keeps_what_no_faster_candidate_beats():
    records = [record(32, 0.80, 1.0), record(48, 0.85, 2.0), record(64, 0.84, 3.0), record(96, 0.90, 4.0)]
    records.append(record(128, None, 0.5))  # never trained: no accuracy, not on the front
    front = pareto_front(records, "p50")
    assert [r.image_size for r in front] == [32, 48, 96]


def test_tune_json_round_trips_and_the_table_shows_every_candidate(tmp_path):
    winner = record(48, 0.85, 2.0)
    figures = [measured(2.1)]
    winner.final = Final(run="winner", val_accuracy=0.86, test_accuracy=0.84, agreement=0.97, measurements=figures)
    winner.status = "winner"
    dropped = record(96, None, 40.0)
    dropped.drop("probe", "p50 40.00 ms > 30 ms on local (x86-64 VNNI)")
    state = TuneFile(
        data="/data", constraints=Constraints(max_latency_ms=30), options=options(), cpu="x86-64 VNNI",
        candidates=[record(32, 0.8, 1.0), winner, dropped], winner=winner.name,
    )  # fmt: skip
    state.write(tmp_path)
    again = read_tune_file(tmp_path)
    assert again == state
    table = tune_table(again).splitlines()
    assert len(table) == 4
    assert table[2].startswith("W  mobilenetv2-0.35-48px") and "0.8400" in table[2]
    assert "dropped (probe): p50 40.00 ms > 30 ms" in table[3]
    assert tune_table(again, markdown=True).splitlines()[1].startswith("|---|")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw["candidates"][0].update(image_size="32"), "field 'candidates[0].image_size' is \"32\""),
        (lambda raw: raw["constraints"].update(max_latency_ms=-1), "field 'constraints.max_latency_ms' is -1"),
        (lambda raw: raw.pop("options"), "lacks the field 'options'"),
        (lambda raw: raw["candidates"][0].update(status="great"), "field 'candidates[0].status' is \"great\""),
    ],
)
def test_a_damaged_tune_json_is_one_line_naming_the_field(tmp_path, damage, message):
    candidates = [record(32, 0.5, 1)]
    state = TuneFile(data="/d", constraints=Constraints(), options=options(), cpu="arm64", candidates=candidates)
    raw = json.loads(state.model_dump_json())
    damage(raw)
    (tmp_path / TUNE_FILE).write_text(json.dumps(raw))
    with pytest.raises(ModelFileError) as error:
        read_tune_file(tmp_path)
    assert message in str(error.value)
    assert str(tmp_path / TUNE_FILE) in str(error.value) and "\n" not in str(error.value)


def test_no_tune_json_says_how_to_start(tmp_path):
    with pytest.raises(ModelFileError, match="no tune.json to resume"):
        read_tune_file(tmp_path)
