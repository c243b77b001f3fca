"""Fixtures for the export tests: the tiny run exported to the formats the shared `exported_run` leaves out,
and a small Keras model from outside edgetl."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXTRA_FORMATS = ["tflite-float16", "tflite-dynamic", "tflite-int8", "onnx-int8", "savedmodel"]


@pytest.fixture(scope="session")
def all_formats_run(trained_run, tmp_path_factory) -> Path:
    """A copy of the tiny run with the formats above; int8 TFLite with int8 input and output (the default is
    uint8)."""
    from edgetl.exporting.exporter import ExportOptions, export_run

    run = tmp_path_factory.mktemp("formats") / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("exports", "exports.json"))
    options = ExportOptions(calibration_samples=30, min_agreement=0.0, io_type="int8")
    export_run(run, EXTRA_FORMATS, options=options)
    return run


@pytest.fixture(scope="session")
def outside_data(sample_dir, tmp_path_factory) -> Path:
    """Three classes of the sample digits (27 images) and a labels file in the model's own (not alphabetical)
    output order."""
    root = tmp_path_factory.mktemp("outside")
    for name in ("two", "one", "three"):
        shutil.copytree(sample_dir / name, root / "images" / name)
    (root / "labels.txt").write_text("two\none\nthree\n")
    return root
