"""The export table says where each file's figures were measured, which other program got a different figure, and
which files' figures do not hold on some CPUs."""

from __future__ import annotations

from pathlib import Path

from edgetl.exporting.record import ExportRecord
from edgetl.exporting.report import format_export_table


def record(fmt: str, agreement: float, verified_on: list[dict], **extra) -> ExportRecord:
    return ExportRecord(
        format=fmt, path=f"exports/{fmt}", size_bytes=1000, sha256="0" * 64, input_dtype="uint8",
        output_dtype="uint8", images=400, agreement=agreement, top1=0.9, keras_top1=0.91, max_probability_diff=0.1,
        flipped_files=[], min_agreement=0.9, passed=True, verified_on=verified_on, **extra,
    )  # fmt: skip


def where(runtime: str, agreement: float, options: str = "default", host: str = "") -> dict:
    return {"runtime": runtime, "options": options, "cpu": "x86-64 VNNI", "host": host, "images": 400,
            "agreement": agreement, "top1": 0.9, "confident_agreement": None}  # fmt: skip


def test_the_table_names_each_place_and_only_the_figures_that_differ():
    litert = where("ai-edge-litert 2.3.0", 0.95)
    close = where("mediapipe 1.2.3", 0.9475, "its own resize")  # one image in 400 off: the same figure
    far = where("mediapipe 1.2.3", 0.93, "its own resize")  # eight images off
    lines = format_export_table([record("tflite-int8", 0.95, [litert, close])], Path("run")).splitlines()
    assert "measured in default sessions: ai-edge-litert 2.3.0 on x86-64 VNNI; mediapipe 1.2.3 on x86-64 VNNI" in lines
    assert not any(line.startswith("tflite-int8 in mediapipe") for line in lines)
    lines = format_export_table([record("tflite-int8", 0.95, [litert, far])], Path("run")).splitlines()
    assert "tflite-int8 in mediapipe 1.2.3 (its own resize): agreement 0.9300, top-1 0.9000" in lines


def test_a_file_made_for_vnni_and_arm64_says_where_its_figures_do_not_hold():
    onnx = where("onnxruntime 1.32.0", 0.99)
    made_for_vnni = record("onnx-int8", 0.99, [onnx], target="vnni-arm64", saturates_on=["x86-64 AVX2 (no VNNI)"])
    text = format_export_table([made_for_vnni], Path("run"))
    assert "onnx-int8 (--target vnni-arm64): its figures do not hold on x86-64 AVX2 (no VNNI)" in " ".join(text.split())
    portable = record("onnx-int8", 0.99, [onnx], target="portable")
    assert "do not hold" not in format_export_table([portable], Path("run"))
