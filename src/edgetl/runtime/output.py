"""How classification results are written: human lines, JSON lines or CSV rows."""

from __future__ import annotations

import csv
import io
import json

from edgetl.runtime.classify import Classification

STYLES = ("text", "json", "csv")


def csv_header(k: int) -> str:
    columns = ["file", "label"]
    for rank in range(1, k + 1):
        columns += [f"label_{rank}", f"score_{rank}"]
    return _csv_row(columns + ["error"])


def _csv_row(values: list) -> str:
    # The csv module quotes a field holding a character of the line terminator: with the default "\r\n" a file
    # name containing a line break is quoted instead of splitting the row. The terminator itself is click's to add.
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue().removesuffix("\r\n")


def format_result(result: Classification, style: str, k: int) -> str:
    if style == "json":
        return json.dumps(result.to_dict())
    if style == "csv":
        if result.error is not None:
            return _csv_row([result.file, ""] + [""] * (2 * k) + [result.error])
        cells: list = [result.file, result.label]
        for label, score in result.top:
            cells += [label, f"{score:.6f}"]
        cells += [""] * (2 * (k - len(result.top)))
        return _csv_row(cells + [""])
    if result.error is not None:
        return f"{result.file}: error: {result.error}"
    scores = ", ".join(f"{label} {score:.3f}" for label, score in result.top)
    if result.label != result.top[0][0]:
        return f"{result.file}: {result.label} (best: {scores})"
    return f"{result.file}: {scores}"
