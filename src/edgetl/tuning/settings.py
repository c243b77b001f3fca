"""The defaults of `edgetl tune`, in one light module: `edgetl.tune` takes them as its defaults and the CLI shows
them (the training defaults, epochs and weights, are TrainConfig's)."""

from __future__ import annotations

from dataclasses import dataclass

# Which latency percentile the budget bounds (batch 1).
PERCENTILES = ("p50", "p90")


@dataclass(frozen=True)
class TuneSettings:
    format: str = "tflite-int8"
    percentile: str = PERCENTILES[0]
    budget_minutes: float = 60.0
    finalists: int = 2  # trained in full, exported and timed again; the most accurate that fits wins
    eta: int = 2  # successive halving keeps the best 1/eta of a rung for the next, which trains eta times longer
