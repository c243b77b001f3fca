"""Bounds on what a flag may ask of this machine, chosen from the machine itself: threads by its cores, batches by
its memory, shares and budgets finite. Light (the standard library only): the CLI and the runtime both read it.

A thread count far above the cores crashes LiteRT and makes onnxruntime allocate a stack per thread; a batch is
held as several float copies at once; NaN passes every `<` and `>` check, so each bound also asks for a finite value.
"""

from __future__ import annotations

import math
import os

from edgetl.errors import UsageError

# More threads than this per core only queue on the same cores; the bound leaves room for hyper-threads and
# oversubscription experiments.
THREADS_PER_CORE = 4
# A batch may take at most this share of the physical memory: decoded pixels, their float copy, the normalised
# input and the runtime's own input tensor exist together.
BATCH_MEMORY_SHARE = 0.25
BATCH_FLOAT_COPIES = 4
FLOAT_BYTES = 4
# The largest pixel budget `--max-megapixels` may set: far over any image a decoder can hold, and small enough that
# the budget stays an exact whole number of pixels.
MAX_BUDGET_MEGAPIXELS = 1_000_000.0
# Where the system cannot say how much memory it has.
ASSUMED_MEMORY_BYTES = 2 * 1024**3


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_threads() -> int:
    return THREADS_PER_CORE * cores()


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return ASSUMED_MEMORY_BYTES


def check_threads(threads: int | None, flag: str = "--threads") -> int | None:
    """None (the runtime's default) or 1 to `max_threads()`."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= max_threads():
        raise UsageError(
            f"{flag} {threads}: expected 1 to {max_threads()} threads ({THREADS_PER_CORE} per core of the "
            f"{cores()} this process may use)"
        )
    return threads


def max_batch(input_size: tuple[int, int]) -> int:
    height, width = input_size
    per_image = height * width * 3 * FLOAT_BYTES * BATCH_FLOAT_COPIES
    return max(1, int(physical_memory() * BATCH_MEMORY_SHARE) // per_image)


def check_batch(batch: int, input_size: tuple[int, int], flag: str = "--batch") -> int:
    """A batch of `input_size` images that fits the memory share above."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError(f"{flag} {batch}: expected a whole number of images, 1 or more")
    limit = max_batch(input_size)
    if batch > limit:
        height, width = input_size
        raise UsageError(
            f"{flag} {batch}: batches of {batch} {height}x{width} images would not fit in "
            f"{BATCH_MEMORY_SHARE:.0%} of this machine's {physical_memory() / 1024**3:.1f} GB of memory; "
            f"use at most {limit}"
        )
    return batch


def check_share(value: float, flag: str) -> float:
    """A share (a threshold, an agreement): a finite number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and 0 <= value <= 1):
        raise UsageError(f"{flag} {value}: expected a number from 0 to 1")
    return float(value)


def check_positive(value: float, flag: str, maximum: float = math.inf) -> float:
    """A budget (megapixels, milliseconds): a finite number above 0, up to `maximum`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} {value}: expected a finite number above 0")
    if value > maximum:
        raise UsageError(f"{flag} {value}: expected at most {maximum:g}")
    return float(value)
