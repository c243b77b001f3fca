"""The timing harness: warm up, then time single calls with a monotonic clock.

Every model and the empty call that measures the harness itself go through the same loop, so the overhead
reported beside the table is the overhead inside every figure of it.
"""

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
    std: float = 0.0
    runs: int = 0

    def to_dict(self) -> dict:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, raw: dict, runs: int = 0) -> Latency:
        return cls(raw["p50"], raw["p90"], raw["p99"], raw["mean"], raw.get("std", 0.0), raw.get("runs", runs))

    @classmethod
    def from_samples(cls, milliseconds: np.ndarray) -> Latency:
        p50, p90, p99 = np.percentile(milliseconds, [50, 90, 99])
        return cls(
            float(p50), float(p90), float(p99), float(milliseconds.mean()), float(milliseconds.std()), len(milliseconds)
        )


def time_calls(call: Callable[[], object], runs: int, warmup: int) -> np.ndarray:
    """Milliseconds of each of `runs` calls after `warmup` untimed ones; `call` must block until it is done."""
    for _ in range(warmup):
        call()
    samples = np.empty(runs, dtype=np.float64)
    clock = time.perf_counter
    for index in range(runs):
        start = clock()
        call()
        samples[index] = clock() - start
    return samples * 1000.0


def time_until_settled(
    call: Callable[[], object], runs: int, warmup: int, tolerance: float = 0.02, max_rounds: int = 10
) -> np.ndarray:
    """Rounds of `runs` calls until one more round moves neither p50 nor p90 by more than `tolerance` (relative)."""
    samples = time_calls(call, runs, warmup)
    for _ in range(max_rounds - 1):
        before = np.percentile(samples, [50, 90])
        samples = np.concatenate([samples, time_calls(call, runs, 0)])
        if np.all(np.abs(np.percentile(samples, [50, 90]) - before) <= tolerance * before):
            break
    return samples


def measure_latency(call: Callable[[], object], runs: int = 100, warmup: int = 10, settle: bool = False) -> Latency:
    """Milliseconds per call of `call`, which must block until its result is ready; with `settle`, as many rounds
    of `runs` calls as it takes for p50 and p90 to stop moving (at most ten)."""
    samples = time_until_settled(call, runs, warmup) if settle else time_calls(call, runs, warmup)
    return Latency.from_samples(samples)


def _empty_call() -> None:
    return None


def harness_overhead_ms(runs: int = 2000) -> float:
    """The p50 of an empty call through the same loop: what the harness adds to every latency figure."""
    return Latency.from_samples(time_calls(_empty_call, runs, warmup=100)).p50


def measure_throughput(call: Callable[[], object], batch: int, runs: int, warmup: int = 1) -> float:
    """Images per second of a batch call, from the median of `runs` timed calls."""
    median_ms = float(np.median(time_calls(call, runs, warmup)))
    return batch / (median_ms / 1000.0) if median_ms > 0 else float("inf")
