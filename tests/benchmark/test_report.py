"""The bench table on a terminal: the essential columns fit 100 and 120 columns, --wide shows them all, the
best value of each column is marked."""

from __future__ import annotations

import re

import pytest

from edgetl.benchmark.report import COLUMNS, format_table, to_markdown
from edgetl.benchmark.result import BenchReport, BenchRow
from edgetl.benchmark.timing import Latency
from edgetl.table import BEST_MARK

TITLE = (
    "edgetl bench on Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz, 2 cores, x86_64, no GPU | tensorflow 2.21.0, "
    "ai-edge-litert 2.0.2, onnxruntime 1.23.2"
)
# MobileNetV2 1.0 at 224 px, as `edgetl bench RUN --threads 1,2` measures it: (format, threads, MB, top-1, p50).
MEASURED = [
    ("keras", 2, 9.1, 0.912, 31.2),
    ("keras-predict", 2, 9.1, 0.912, 48.9),
    ("tflite-float32", 1, 8.9, 0.912, 24.1),
    ("tflite-float32", 2, 8.9, 0.912, 13.8),
    ("tflite-int8", 1, 2.6, 0.904, 11.9),
    ("tflite-int8", 2, 2.6, 0.904, 7.2),
    ("onnx", 1, 8.8, 0.912, 22.5),
    ("onnx", 2, 8.8, 0.912, 12.9),
    ("onnx-int8", 1, 2.5, 0.9, 15.3),
    ("onnx-int8", 2, 2.5, 0.9, 9.6),
]


def row(format_name, threads, megabytes, top1, p50, host="local") -> BenchRow:
    tflite, onnx = format_name.startswith("tflite"), format_name.startswith("onnx")
    return BenchRow(
        format=format_name,
        path=f"run/exports/{format_name}",
        size_bytes=int(megabytes * 2**20),
        top1=top1,
        top5=0.99,
        agreement=1.0 if format_name.startswith("keras") else 0.99 - p50 / 1000,
        max_probability_diff=0.0123,
        latency=Latency(p50=p50, p90=p50 * 1.1, p99=p50 * 1.3, mean=p50 * 1.05, std=p50 / 10, runs=100),
        throughput_ips=32_000 / p50,
        batch=32,
        threads=threads,
        runtime="ai-edge-litert 2.0.2" if tflite else "onnxruntime 1.23.2" if onnx else "tensorflow 2.21.0",
        provider="XNNPACK" if tflite else "CPUExecutionProvider" if onnx else "CPU:0",
        device="x86_64",
        load_ms=123.0 + p50,
        peak_rss_bytes=412 * 2**20,
        peak_rss_scope="format",
        images=500,
        host=host,
        harness_overhead_ms=0.0002,
    )


def report(hosts=("local",)) -> BenchReport:
    rows = [row(*measured, host=host) for host in hosts for measured in MEASURED]
    return BenchReport(rows, TITLE, harness_overhead_ms=0.0002)


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@pytest.mark.parametrize("width", [100, 120])
def test_the_table_fits_the_terminal(width):
    table = format_table(report(), width=width)
    assert widest(table) <= width, table
    header = next(line for line in table.splitlines() if line.startswith("format"))
    for heading in ("format", "thr", "size MB", "top-1", "agree", "p50 ms", "p90 ms", "img/s", "runtime"):
        assert heading in header
    assert "p99" not in header and "provider" not in header
    # Every row is whole, on one line: its format, its thread count and its runtime, not cut.
    formats = {measured[0] for measured in MEASURED}
    body = [line for line in table.splitlines() if line.split()[:1] and line.split()[0] in formats]
    assert len(body) == len(MEASURED)
    assert all(
        line.rstrip().endswith(("tensorflow 2.21.0", "ai-edge-litert 2.0.2", "onnxruntime 1.23.2")) for line in body
    )


def test_several_hosts_add_the_host_column_and_still_fit():
    table = format_table(report(hosts=("local", "pi@raspberrypi-kitchen.lan")), width=100)
    assert widest(table) <= 100, table
    assert "host" in next(line for line in table.splitlines() if line.startswith("format"))


def test_wide_shows_every_column_and_is_measured():
    wide = format_table(report(), wide=True)
    header = next(line for line in wide.splitlines() if line.startswith("format"))
    assert [heading for heading in re.split(r"\s{2,}", header.strip())] == [column.heading for column in COLUMNS]
    rule = next(line for line in wide.splitlines() if line.startswith("───"))
    assert 180 < len(rule) < 210 and widest(format_table(report(), width=100)) <= 100
    # Without a width limit (piped output) nothing is cut or wrapped, the title included.
    assert wide.splitlines()[0] == TITLE
    assert "…" not in wide


def test_the_best_value_of_each_column_is_marked():
    table = format_table(report(), width=120)
    lines = {tuple(line.split()[:2]): line for line in table.splitlines() if line.split()[:1] != ["format"]}
    fastest = lines[("tflite-int8", "2")]
    assert f"7.200{BEST_MARK}" in fastest and f"4444{BEST_MARK}" in fastest  # p50, img/s
    assert f"2.50{BEST_MARK}" in lines[("onnx-int8", "1")]  # smallest file
    assert f"0.912{BEST_MARK}" in lines[("keras", "2")]  # top-1: Keras ties with the float exports
    assert f"0.912{BEST_MARK}" in lines[("onnx", "1")]
    # Agreement: the Keras rows are the reference (1.000), the best export is marked.
    assert BEST_MARK not in lines[("keras", "2")].split()[5]
    assert f"{0.99 - 7.2 / 1000:.3f}{BEST_MARK}" in fastest
    assert "*: best of its column" in table
    # On a colour terminal the best values are bold and green instead.
    coloured = format_table(report(), width=120, color=True)
    assert re.search(r"\x1b\[1;32m *7\.200\x1b\[0m", coloured) and f"7.200{BEST_MARK}" not in coloured
    assert "| **7.200** |" in to_markdown(report())
