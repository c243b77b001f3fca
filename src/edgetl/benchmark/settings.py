"""The defaults of `edgetl bench`, in one light module: the CLI and the API read them here, and the per-row
processes and boards get the caller's settings whole (worker.py)."""

from __future__ import annotations

from dataclasses import dataclass

# Test images sent to each remote board (the first of the run's test split).
REMOTE_SAMPLE_IMAGES = 50


@dataclass(frozen=True)
class BenchSettings:
    runs: int = 100
    warmup: int = 10
    batch: int = 32  # throughput batch; accuracy is computed in batches of this size too
    settle: bool = False  # repeat rounds of `runs` calls until p50 and p90 stop moving

    @property
    def throughput_runs(self) -> int:
        """Timed batch calls for the throughput figure: a tenth of the latency runs, and never fewer than three."""
        return max(3, self.runs // 10)


@dataclass(frozen=True)
class SshSettings:
    options: tuple[str, ...] = ()  # passed as `-o OPTION` to ssh and scp, e.g. "Port=2222"
    python: str = "python3"  # the board's interpreter
    connect_timeout_s: int = 10
    command_timeout_s: int = 3600
