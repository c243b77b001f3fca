"""Progress: the library reports its long steps to whoever listens; the CLI draws them only for a person."""

from __future__ import annotations

import io
import sys

import pytest

from edgetl import progress, terminal
from edgetl.data.folder import read_class_folders
from edgetl.data.pipeline import decode_subset


class Recorder(progress.Reporter):
    def __init__(self) -> None:
        self.steps: list[list] = []

    def start(self, description: str, total: int | None) -> progress.Step:
        record = [description, total, 0]
        self.steps.append(record)

        class Recorded(progress.Step):
            def advance(self, amount: int = 1) -> None:
                record[2] += amount

        return Recorded()


def test_decoding_reports_each_image_to_the_installed_reporter(sample_dir, monkeypatch):
    from edgetl.data import pipeline

    monkeypatch.setattr(pipeline, "DECODE_CHUNK", 16)  # several reports for the 90 images
    examples = read_class_folders(sample_dir).examples
    with progress.reporting(Recorder()) as recorder:
        decoded = decode_subset(examples, 32, what="test images")
    assert recorder.steps == [["decoding test images", len(examples), len(examples)]]
    assert decoded.pixels.shape == (len(examples), 32, 32, 3) and len(decoded.examples) == len(examples)
    # Nobody listening: nothing reported, nothing printed, the same pixels.
    again = decode_subset(examples, 32)
    assert (again.pixels == decoded.pixels).all() and recorder.steps[1:] == []


def test_progress_is_drawn_only_for_a_person(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert not terminal.interactive()  # under pytest: not a terminal
    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert terminal.interactive()
    monkeypatch.setenv("CI", "true")
    assert not terminal.interactive()
    with terminal.progress_shown(quiet=False):
        assert type(progress._reporter) is progress.Reporter  # in CI: nobody draws
    monkeypatch.delenv("CI")
    with terminal.progress_shown(quiet=True):
        assert type(progress._reporter) is progress.Reporter


def test_terminal_progress_leaves_a_line_per_finished_step(monkeypatch):
    from rich.console import Console

    screen = io.StringIO()
    reporter = terminal.TerminalProgress(Console(file=screen, force_terminal=True, width=100, color_system=None))
    monkeypatch.setattr(terminal.TerminalProgress, "SHOWN_AFTER_S", 0.0)
    with progress.reporting(reporter), progress.step("converting tflite-int8", total=3) as converting:
        converting.describe("converting tflite-int8 (minmax-200)")
        for _ in range(3):
            converting.advance()
    assert not reporter.bars.live.is_started and reporter.bars.tasks == []
    assert "✓ converting tflite-int8 (minmax-200) 3/3" in screen.getvalue()


@pytest.mark.parametrize("width", [100, 120])
def test_the_export_table_fits_the_terminal(width):
    from edgetl.exporting.exporter import ExportRecord
    from edgetl.exporting.report import format_export_table

    def record(name: str, megabytes: float, agreement: float, passed: bool = True) -> ExportRecord:
        int8 = name.endswith("int8")
        return ExportRecord(
            format=name, path=f"exports/model_{name}", size_bytes=int(megabytes * 2**20), sha256="0" * 64,
            input_dtype="int8" if int8 else "float32", output_dtype="int8" if int8 else "float32", images=500,
            agreement=agreement, top1=0.9, keras_top1=0.91, max_probability_diff=0.01, flipped_files=[],
            min_agreement=0.9 if int8 else 0.99, passed=passed, int8_op_share=0.98 if int8 else 0.0,
            confident_agreement=0.99, problems=[] if passed else ["not integer-only: SIN x1 left in float"],
        )  # fmt: skip

    records = [record("tflite-float32", 8.9, 1.0), record("tflite-int8", 2.6, 0.95, passed=False)]
    records += [record("onnx", 8.8, 0.998), record("onnx-int8", 2.5, 0.93)]
    table = format_export_table(records, "/home/someone/projects/demo-out/run", width=width)
    assert max(len(line) for line in table.splitlines()) <= width, table
    assert "tflite-int8" in table and "int8/int8" in table and "FAILED" in table and "2.50*" in table
    wide = format_export_table(records, "run", wide=True)
    assert "int8 ops" in wide and "exports/model_onnx-int8" in wide
