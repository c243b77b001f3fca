"""`edgetl bench compare A.json B.json ...`: results from several machines in one table, and what differs."""

from __future__ import annotations

from pathlib import Path

from edgetl.benchmark.result import BenchReport, BenchRow
from edgetl.errors import ModelFileError

# The settings that must match for two rows of the same format to be compared figure for figure.
SETTINGS = {
    "threads": lambda row: row.threads,
    "runtime": lambda row: row.runtime,
    "provider": lambda row: row.provider,
}


def load_rows(path: Path) -> list[BenchRow]:
    """The rows of a bench JSON file, checked (edgetl.schemas): it may come from another machine."""
    from edgetl.schemas import read_bench_rows

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file (write one with `edgetl bench RUN --json {path}`)")
    rows = [BenchRow.from_fields(fields) for fields in read_bench_rows(path)]
    # Rows measured here say host "local"; in a merged table the machine's own name tells them apart.
    return [row if row.host not in ("", "local") else _named(row, path) for row in rows]


def _named(row: BenchRow, path: Path) -> BenchRow:
    from dataclasses import replace

    return replace(row, host=row.fingerprint.get("host") or path.stem)


def differing_settings(rows: list[BenchRow]) -> dict[int, str]:
    """Row index -> which settings differ from other rows of the same format (threads, runtime, provider)."""
    flags: dict[int, str] = {}
    by_format: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_format.setdefault(row.format, []).append(index)
    for indices in by_format.values():
        differing = []
        for name, value in SETTINGS.items():
            values = [value(rows[i]) for i in indices]
            if len(set(values)) > 1:
                shown = ", ".join(dict.fromkeys("auto" if v is None else str(v) for v in values))
                differing.append(f"{name} differ ({shown})")
        if differing:
            for index in indices:
                flags[index] = "; ".join(differing)
    return flags


def compare_results(paths: list[Path]) -> BenchReport:
    rows = [row for path in paths for row in load_rows(path)]
    machines: dict[str, str] = {}
    for row in rows:
        facts = row.fingerprint
        machines.setdefault(
            row.host, f"{row.host} ({facts.get('cpu', '?')}, {facts.get('cores', '?')} cores, {row.device})"
        )
    title = f"edgetl bench compare: {len(machines)} machine(s): " + "; ".join(machines.values())
    overhead = max((row.harness_overhead_ms for row in rows), default=0.0)
    return BenchReport(rows, title, overhead, flags=differing_settings(rows))
