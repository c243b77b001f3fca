"""The export formats a search can target: those the device bench times, a single .tflite or .onnx file (read from
the format table, so a new format of either kind is a target too)."""

from __future__ import annotations

from edgetl.exporting.formats import FORMATS

TUNABLE_KINDS = ("tflite", "onnx")
TUNABLE_FORMATS = tuple(name for name, export_format in FORMATS.items() if export_format.kind in TUNABLE_KINDS)
