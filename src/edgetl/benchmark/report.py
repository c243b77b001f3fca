"""The bench table on the terminal, and as JSON, CSV, Markdown and a PNG plot. Imports nothing heavy at the top."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

from edgetl.benchmark.result import BenchReport, BenchRow
from edgetl.run import atomic_write


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _threads(row: BenchRow) -> str:
    return "auto" if row.threads is None else str(row.threads)


def _peak_mb(row: BenchRow) -> str:
    return "-" if row.peak_rss_bytes is None else f"{row.peak_rss_bytes / 2**20:.0f}"


# (heading, width, cell): one list drives the terminal table, the Markdown table and the order of CSV columns.
COLUMNS: list[tuple[str, int, Callable[[BenchRow], str]]] = [
    ("format", 15, lambda r: r.format),
    ("host", 16, lambda r: r.host),
    ("device", 8, lambda r: r.device),
    ("thr", 4, _threads),
    ("size KB", 8, lambda r: f"{r.size_bytes / 1024:.0f}"),
    ("top-1", 6, lambda r: f"{r.top1:.3f}"),
    ("top-5", 6, lambda r: f"{r.top5:.3f}"),
    ("agree", 6, lambda r: _num(r.agreement, ".3f")),
    ("max dp", 7, lambda r: _num(r.max_probability_diff, ".1e")),
    ("p50 ms", 8, lambda r: f"{r.latency.p50:.3f}"),
    ("p90 ms", 8, lambda r: f"{r.latency.p90:.3f}"),
    ("p99 ms", 8, lambda r: f"{r.latency.p99:.3f}"),
    ("mean±std", 15, lambda r: f"{r.latency.mean:.3f}±{r.latency.std:.3f}"),
    ("img/s", 8, lambda r: _num(r.throughput_ips, ".0f")),
    ("load ms", 8, lambda r: f"{r.load_ms:.0f}"),
    ("peak MB", 8, _peak_mb),
    ("runtime", 22, lambda r: r.runtime),
    ("provider", 20, lambda r: r.provider),
]


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
    for row in report.rows:
        if row.emulated:
            reasons = "; ".join(row.fingerprint.get("emulation_reasons", []))
            lines.append(f"! {row.format} on {row.host} ran under emulation ({reasons}): its timings mean nothing")
    return lines


def format_table(report: BenchReport) -> str:
    header = "".join(f"{name:<{width}} " for name, width, _ in COLUMNS)
    lines = [report.title, header.rstrip()]
    for index, row in enumerate(report.rows):
        cells = "".join(f"{cell(row):<{width}} " for _, width, cell in COLUMNS).rstrip()
        lines.append(cells + (" !" if index in report.flags or row.emulated else ""))
    return "\n".join(lines + notes(report))


def to_json(report: BenchReport) -> str:
    rows = []
    for index, row in enumerate(report.rows):
        record = row.to_dict()
        if index in report.flags:
            record["settings_differ"] = report.flags[index]
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
    names = [name for name, _, _ in COLUMNS]
    lines = [f"### {report.title}", "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in report.rows:
        lines.append("| " + " | ".join(cell(row).replace("|", "/") for _, _, cell in COLUMNS) + " |")
    lines.append("")
    lines += [f"- {note}" for note in notes(report)]
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
