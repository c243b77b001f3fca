"""A board's bench rows are a verification too: held to Keras on the sample they ran, compared with this machine's
answers for the same file, and recorded in exports.json as a place the file was verified."""

from __future__ import annotations

import json

import numpy as np

from edgetl.benchmark.bench import verify_on_board
from edgetl.benchmark.exported import Measured
from edgetl.benchmark.gates import Gates, failed_gates
from edgetl.benchmark.result import BenchRow
from edgetl.benchmark.timing import Latency
from edgetl.run import RunDir

BOARD = "pi@board"


def row(fmt: str, top1: float, host: str = "local", device: str = "x86_64", **extra) -> BenchRow:
    return BenchRow(
        format=fmt, path=f"exports/{fmt}", size_bytes=1, top1=top1, top5=1.0, agreement=1.0,
        max_probability_diff=0.0, latency=Latency.from_dict({"p50": 1.0, "p90": 1.0, "p99": 1.0, "mean": 1.0}, 5),
        throughput_ips=None, batch=1, threads=None, runtime="ai-edge-litert 2.3.0", provider="XNNPACK",
        device=device, load_ms=1.0, peak_rss_bytes=None, peak_rss_scope="format", images=4, host=host, **extra,
    )  # fmt: skip


def one_hot(classes: list[int], n: int = 3) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[classes]


def test_board_rows_are_held_to_keras_on_their_own_sample():
    keras = row("keras", top1=0.80)
    board = row("tflite-int8", top1=0.70, host=BOARD, device="aarch64", reference_top1=0.75)
    failures = failed_gates([keras, board], Gates(max_accuracy_drop=4.0))
    # 5 points below Keras on the board's sample (0.75), not 10 below Keras' figure on the whole test split.
    assert len(failures) == 1 and f"tflite-int8 on {BOARD}" in failures[0] and "5.00 points" in failures[0]
    assert failed_gates([keras, board], Gates(max_accuracy_drop=6.0)) == []


def test_a_board_that_answers_otherwise_is_named_and_recorded(tmp_path):
    run = RunDir(tmp_path)
    here = {"runtime": "ai-edge-litert 2.3.0", "cpu": "x86-64 VNNI", "host": ""}
    record = {"format": "tflite-int8", "path": "exports/model_int8.tflite", "size_bytes": 1, "sha256": "0" * 64}
    run.exports_index.write_text(json.dumps([{**record, "passed": True, "verified_on": [here]}]))
    labels = np.array([0, 1, 2, 0])
    keras = one_hot([0, 1, 2, 1])
    host = one_hot([0, 1, 2, 1])
    on_board = one_hot([0, 1, 1, 1])  # one image named otherwise than here
    measured = Measured(row("tflite-int8", top1=0.5, host=BOARD, device="aarch64"), on_board)
    checked, difference = verify_on_board(run, measured, keras, host, labels)
    assert checked.reference_top1 == 0.75 and checked.agreement == 0.75
    assert difference.startswith("names another class than this machine on 1 of 4 images")
    assert "agreement with Keras 0.7500 (here 1.0000)" in difference
    (record,) = json.loads(run.exports_index.read_text())
    board_entry = record["verified_on"][-1]
    assert board_entry["host"] == BOARD and board_entry["cpu"] == "arm64" and board_entry["images"] == 4
    assert board_entry["agreement"] == 0.75 and board_entry["top1"] == 0.5
    # Benched again, the board's entry is replaced, not repeated; the host's entry stays.
    verify_on_board(run, measured, keras, host, labels)
    (record,) = json.loads(run.exports_index.read_text())
    assert [entry.get("host", "") for entry in record["verified_on"]] == ["", BOARD]


def test_a_board_that_answers_as_here_is_not_named(tmp_path):
    run = RunDir(tmp_path)
    labels = np.array([0, 1])
    measured = Measured(row("onnx-int8", top1=1.0, host=BOARD, device="aarch64"), one_hot([0, 1]))
    checked, difference = verify_on_board(run, measured, one_hot([0, 1]), one_hot([0, 1]), labels)
    assert difference is None and checked.agreement == 1.0
    assert not run.exports_index.exists()  # no exports.json in this run: nothing to add the figure to
