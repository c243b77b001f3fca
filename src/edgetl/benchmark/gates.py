"""Gates for CI pipelines: conditions on the bench rows that set the exit code."""

from __future__ import annotations

from dataclasses import dataclass

from edgetl.benchmark.result import BenchRow


@dataclass(frozen=True)
class Gates:
    max_accuracy_drop: float | None = None  # percentage points of top-1 below Keras
    min_agreement: float | None = None  # share of top-1 choices equal to Keras'
    max_p90_ms: float | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.max_accuracy_drop, self.min_agreement, self.max_p90_ms))


def is_keras(row: BenchRow) -> bool:
    return row.format.startswith("keras")


def failed_gates(rows: list[BenchRow], gates: Gates) -> list[str]:
    """One line per failed gate and row. Gates apply to exported files; Keras is the reference."""
    keras = next((row for row in rows if row.format == "keras"), None)
    failures = []
    if keras is None and (gates.max_accuracy_drop is not None or gates.min_agreement is not None):
        failures.append("no Keras row to compare with: --max-accuracy-drop and --min-agreement need `edgetl bench RUN`")
    for row in rows:
        if is_keras(row):
            continue
        where = f"{row.format} on {row.host} ({row.threads or 'auto'} threads, {row.provider})"
        if keras is not None and gates.max_accuracy_drop is not None:
            # A board row ran a sample of the test images: it is held to Keras on that sample.
            reference = keras.top1 if row.reference_top1 is None else row.reference_top1
            drop = (reference - row.top1) * 100.0
            if drop > gates.max_accuracy_drop:
                failures.append(
                    f"{where}: top-1 {row.top1:.4f} is {drop:.2f} points below Keras' {reference:.4f} "
                    f"(--max-accuracy-drop {gates.max_accuracy_drop:g})"
                )
        if gates.min_agreement is not None and row.agreement is not None and row.agreement < gates.min_agreement:
            failures.append(
                f"{where}: agreement with Keras {row.agreement:.4f} < --min-agreement {gates.min_agreement:g}"
            )
        if gates.max_p90_ms is not None and row.latency.p90 > gates.max_p90_ms:
            failures.append(f"{where}: p90 {row.latency.p90:.3f} ms > --max-p90-ms {gates.max_p90_ms:g}")
    return failures
