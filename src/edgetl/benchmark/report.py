"""The bench table on the terminal, and as JSON, CSV, Markdown and a PNG plot. Imports nothing heavy at the top."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from edgetl.benchmark.gates import is_keras
from edgetl.benchmark.result import BenchReport, BenchRow
from edgetl.files import atomic_write
from edgetl.table import Column, best_note, render_table, shown_columns, wrap_lines


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _threads(row: BenchRow) -> str:
    return "auto" if row.threads is None else str(row.threads)


def _peak_mb(row: BenchRow) -> str:
    return "-" if row.peak_rss_bytes is None else f"{row.peak_rss_bytes / 2**20:.0f}"


def _agreement(row: BenchRow) -> float | None:
    return None if is_keras(row) else row.agreement  # Keras is the reference: its 1.0 is no achievement


def _peak(row: BenchRow) -> float | None:
    return None if row.peak_rss_bytes is None else row.peak_rss_bytes / 2**20


# One list drives the terminal table (essential columns by default, all with --wide) and the Markdown table.
COLUMNS: list[Column] = [
    Column("format", lambda r: r.format),
    Column("host", lambda r: r.host, essential=False),
    Column("device", lambda r: r.device, essential=False),
    Column("thr", _threads),
    Column("size MB", lambda r: f"{r.size_bytes / 2**20:.2f}", best="min", value=lambda r: r.size_bytes, numeric=True),
    Column("top-1", lambda r: f"{r.top1:.3f}", best="max", value=lambda r: r.top1, numeric=True),
    Column("top-5", lambda r: f"{r.top5:.3f}", essential=False, best="max", value=lambda r: r.top5, numeric=True),
    Column("agree", lambda r: _num(r.agreement, ".3f"), best="max", value=_agreement, numeric=True),
    Column("max Δp", lambda r: _num(r.max_probability_diff, ".1e"), essential=False, numeric=True),
    Column("p50 ms", lambda r: f"{r.latency.p50:.3f}", best="min", value=lambda r: r.latency.p50, numeric=True),
    Column("p90 ms", lambda r: f"{r.latency.p90:.3f}", best="min", value=lambda r: r.latency.p90, numeric=True),
    Column("p99 ms", lambda r: f"{r.latency.p99:.3f}", essential=False, numeric=True),
    Column("mean±std ms", lambda r: f"{r.latency.mean:.3f}±{r.latency.std:.3f}", essential=False, numeric=True),
    Column(
        "img/s", lambda r: _num(r.throughput_ips, ".0f"), best="max", value=lambda r: r.throughput_ips, numeric=True
    ),
    Column(
        "load ms", lambda r: f"{r.load_ms:.0f}", essential=False, best="min", value=lambda r: r.load_ms, numeric=True
    ),
    Column("peak MB", _peak_mb, essential=False, best="min", value=_peak, numeric=True),
    Column("runtime", lambda r: r.runtime),
    Column("provider", lambda r: r.provider, essential=False),
]
HOST = COLUMNS[1]


def table_columns(report: BenchReport, wide: bool = False) -> list[Column]:
    """The columns `format_table` shows: the essential ones, plus the host when the rows come from several."""
    shown = shown_columns(COLUMNS, wide)
    if not wide and len({row.host for row in report.rows}) > 1:
        shown.insert(1, HOST)
    return shown


def notes(report: BenchReport) -> list[str]:
    """The lines under the table: the harness overhead, how memory was measured, what is not comparable."""
    lines = []
    if report.rows:
        fastest = min(row.latency.p50 for row in report.rows)
        share = 100.0 * report.harness_overhead_ms / fastest if fastest > 0 else float("inf")
        lines.append(
            f"harness overhead {report.harness_overhead_ms * 1000:.2f} us per call "
            f"({share:.2f}% of the fastest p50, {fastest:.3f} ms); latency at batch 1 after warm-up, "
            f"img/s at batch {report.rows[0].batch}"
        )
    scopes = {row.peak_rss_scope for row in report.rows}
    if "process" in scopes:
        lines.append("peak MB: rows marked 'process' share one process (Keras: the process that loaded TensorFlow)")
    if "format" in scopes:
        lines.append("peak MB of exported files: each measured in a fresh process of its own")
    for index, note in sorted(report.flags.items()):
        lines.append(f"! {report.rows[index].format} on {report.rows[index].host}: {note}")
    for index, note in sorted(report.differences.items()):
        lines.append(f"≠ {report.rows[index].format} on {report.rows[index].host}: {note}")
    for row in report.rows:
        if row.emulated:
            reasons = "; ".join(row.fingerprint.get("emulation_reasons", []))
            lines.append(f"! {row.format} on {row.host} ran under emulation ({reasons}): its timings mean nothing")
    return lines


def format_table(report: BenchReport, wide: bool = False, width: int | None = None, color: bool = False) -> str:
    """The title, the table and the notes, no wider than `width` (None: as wide as they need)."""
    table = render_table(
        report.rows,
        table_columns(report, wide),
        width,
        color,
        row_suffix=lambda index: " !" if index in report.flags or report.rows[index].emulated else "",
    )
    more = [] if wide else ["--wide for every column (top-5, p99, load time, memory, provider, ...)"]
    return "\n".join(
        [*wrap_lines([report.title], width), table, *wrap_lines([*notes(report), best_note(color), *more], width)]
    )


def to_json(report: BenchReport) -> str:
    rows = []
    for index, row in enumerate(report.rows):
        record = row.to_dict()
        if index in report.flags:
            record["settings_differ"] = report.flags[index]
        if index in report.differences:
            record["differs_from_host"] = report.differences[index]
        rows.append(record)
    return json.dumps(rows, indent=1)


CSV_FIELDS = [
    "format",
    "host",
    "device",
    "threads",
    "size_bytes",
    "top1",
    "top5",
    "agreement",
    "max_probability_diff",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "runs",
    "throughput_ips",
    "batch",
    "load_ms",
    "peak_rss_bytes",
    "peak_rss_scope",
    "runtime",
    "provider",
    "path",
    "emulated",
]


def to_csv(report: BenchReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        record = row.to_dict()
        record.update({f"{key}_ms": value for key, value in row.latency.to_dict().items()})
        writer.writerow({key: "" if record.get(key) is None else record[key] for key in CSV_FIELDS})
    return buffer.getvalue()


def to_markdown(report: BenchReport) -> str:
    names = [column.heading for column in COLUMNS]
    lines = [f"### {report.title}", "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    best = [column.best_rows(report.rows) for column in COLUMNS]
    for index, row in enumerate(report.rows):
        cells = [column.cell(row).replace("|", "/") for column in COLUMNS]
        cells = [f"**{cell}**" if index in marked else cell for cell, marked in zip(cells, best, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {note}" for note in notes(report)] + ["- bold: best of its column"]
    return "\n".join(lines) + "\n"


def write_plot(report: BenchReport, path: Path) -> None:
    """Top-1 accuracy against p50 latency (log scale), one marker per row, its area proportional to file size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 6), dpi=100)
    largest = max((row.size_bytes for row in report.rows), default=1) or 1
    for row in report.rows:
        label = f"{row.format} ({row.host}, {_threads(row)} thr)"
        area = 40 + 600 * row.size_bytes / largest
        axes.scatter(row.latency.p50, row.top1 * 100, s=area, alpha=0.6, label=label)
    axes.set_xscale("log")
    axes.set_xlabel("p50 latency at batch 1 (ms, log scale)")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_title(report.title, fontsize=8, wrap=True)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="best", title="marker area ~ file size", title_fontsize=7)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write(path, buffer.getvalue())


def write_outputs(
    report: BenchReport,
    json_path: Path | None = None,
    csv_path: Path | None = None,
    markdown_path: Path | None = None,
    plot_path: Path | None = None,
) -> list[Path]:
    written = []
    for path, render in ((json_path, to_json), (csv_path, to_csv), (markdown_path, to_markdown)):
        if path is not None:
            atomic_write(path, render(report))
            written.append(path)
    if plot_path is not None:
        write_plot(report, plot_path)
        written.append(plot_path)
    return written
