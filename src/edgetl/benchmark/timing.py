"""The timing harness: warm up, then time single calls with a monotonic clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Latency:
    p50: float
    p90: float
    p99: float
    mean: float
    runs: int

    def to_dict(self) -> dict:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99, "mean": self.mean}


def measure_latency(call: Callable[[], object], runs: int = 100, warmup: int = 10) -> Latency:
    """Milliseconds per call of `call`, which must block until its result is ready."""
    for _ in range(warmup):
        call()
    samples = np.empty(runs, dtype=np.float64)
    for index in range(runs):
        start = time.perf_counter()
        call()
        samples[index] = time.perf_counter() - start
    milliseconds = samples * 1000.0
    p50, p90, p99 = np.percentile(milliseconds, [50, 90, 99])
    return Latency(float(p50), float(p90), float(p99), float(milliseconds.mean()), runs)
