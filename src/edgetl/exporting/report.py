"""The export table on the terminal: one row per file written, the essential columns by default."""

from __future__ import annotations

from pathlib import Path

from edgetl.exporting.consumers import CONSUMER_TOLERANCE, place_of
from edgetl.exporting.record import ExportRecord
from edgetl.table import Column, best_note, render_table, shown_columns, wrap_lines


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def verdict(record: ExportRecord) -> str:
    if record.passed:
        return "ok"
    below = record.agreement < record.min_agreement
    return "FAILED" + (f" (< {record.min_agreement:.2f})" if below else " (" + "; ".join(record.problems) + ")")


COLUMNS: list[Column] = [
    Column("format", lambda r: r.format),
    Column("size MB", lambda r: f"{r.size_bytes / 2**20:.2f}", best="min", value=lambda r: r.size_bytes, numeric=True),
    Column("in/out", lambda r: f"{r.input_dtype}/{r.output_dtype}"),
    Column(
        "int8 ops",
        lambda r: "-" if r.int8_op_share is None else f"{r.int8_op_share:.0%}",
        essential=False,
        numeric=True,
    ),
    Column("agreement", lambda r: f"{r.agreement:.4f}", best="max", value=lambda r: r.agreement, numeric=True),
    Column("confident", lambda r: _share(r.confident_agreement), essential=False, numeric=True),
    Column("top-1", lambda r: _share(r.top1), best="max", value=lambda r: r.top1, numeric=True),
    Column("keras top-1", lambda r: _share(r.keras_top1), essential=False, numeric=True),
    Column("max Δp", lambda r: f"{r.max_probability_diff:.4f}", essential=False, numeric=True),
    Column("verdict", verdict),
    Column("file", lambda r: r.path, essential=False),
]


def _runs_on(records: list[ExportRecord]) -> list[str]:
    """One line naming the runtimes that load the files, the files that share them grouped."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for record in records:
        if record.runtimes:
            groups.setdefault(tuple(record.runtimes), []).append(record.format)
    if not groups:
        return []
    return ["runs on: " + "; ".join(f"{', '.join(names)}: {', '.join(runtimes)}" for runtimes, names in groups.items())]


def _measured_on(records: list[ExportRecord]) -> list[str]:
    """Where the figures were measured (runtime with its default options, CPU class); another program's figure
    where it differs from edgetl's by more than one image in 200; the files whose figures do not hold on some CPUs
    (an int8 ONNX file made for VNNI and arm64)."""
    places = sorted({place_of(where) for record in records for where in record.verified_on})
    lines = ["measured in default sessions: " + "; ".join(places)] if places else []
    for record in records:
        for where in record.verified_on[1:]:
            if abs(where["agreement"] - record.agreement) > CONSUMER_TOLERANCE:
                lines.append(
                    f"{record.format} in {where['runtime']} ({where['options']}): agreement "
                    f"{where['agreement']:.4f}" + (f", top-1 {where['top1']:.4f}" if where["top1"] is not None else "")
                )
        if record.saturates_on:
            lines.append(
                f"{record.format} (--target {record.target}): its figures do not hold on "
                f"{', '.join(record.saturates_on)}, where onnxruntime's int8 kernels saturate; --target portable "
                "gives a file that holds everywhere"
            )
    return lines


def format_export_table(
    records: list[ExportRecord], root: Path, wide: bool = False, width: int | None = None, color: bool = False
) -> str:
    """The table of exported files, no wider than `width` (None: as wide as it needs), and where they are."""
    table = render_table(records, shown_columns(COLUMNS, wide), width, color)
    folders = sorted({str((Path(root) / record.path).parent) for record in records})
    lines = [f"written to {', '.join(folders)}", *_runs_on(records), *_measured_on(records), best_note(color)]
    if not wide:
        lines.append("--wide for every column (int8 op share, confident agreement, Keras top-1, max Δp, file)")
    return "\n".join([table, *wrap_lines(lines, width)])


def fallback_cost(record: ExportRecord) -> str:
    """What keeping layers in float cost, against the best integer-only attempt."""
    if not record.float_layers:
        return ""
    integer = [a for a in record.attempts if not a["float_layers"]]
    best = max(integer, key=lambda a: a["agreement"])
    size = (record.size_bytes - best["size_bytes"]) / best["size_bytes"]
    confident = ""
    if best["confident_agreement"] is not None and record.confident_agreement is not None:
        confident = f", on confident images {best['confident_agreement']:.4f} -> {record.confident_agreement:.4f}"
    return (
        f" ({len(record.float_layers)} layer(s) in float: agreement {best['agreement']:.4f} -> "
        f"{record.agreement:.4f}{confident}, size {size:+.0%})"
    )


def _tried(attempt: dict) -> str:
    """A recipe tried and its agreement, or where it stopped (int8.cannot_matter)."""
    if attempt.get("passed") is None:
        return f"{attempt['recipe']} (stopped after {attempt.get('images')} images: cannot settle)"
    return f"{attempt['recipe']} {attempt['agreement']:.4f}"


def record_notes(record: ExportRecord) -> list[str]:
    """The lines under the table about one file: the recipes tried, the ops left in float, the flipped images."""
    lines = []
    if len(record.attempts) > 1 or record.float_layers:
        tried = ", ".join(_tried(attempt) for attempt in record.attempts)
        lines.append(f"{record.format}: tried {tried}; kept {record.recipe}{fallback_cost(record)}")
    if record.format.endswith("int8") and record.float_ops:
        lines.append(
            f"{record.format}: left in float: " + ", ".join(f"{op} x{n}" for op, n in record.float_ops.items())
        )
    if record.flipped_files:
        lines.append(
            f"{record.format}: {len(record.flipped_files)} test image(s) changed top-1 (listed in exports.json)"
        )
    return lines
