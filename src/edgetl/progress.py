"""How far a long step has got, told by the library and drawn by whoever listens.

The library never prints: it opens a `step` (decoding images, a conversion, a bench row), advances it and closes
it. Nobody listens by default, so in tests, scripts and the device worker every call does nothing; `edgetl`
installs a listener with `reporting` when it runs on a terminal. Imports nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Step:
    """One step being reported. The base class ignores everything."""

    def advance(self, amount: int = 1) -> None:
        """`amount` more of the step's total are done."""

    def describe(self, description: str) -> None:
        """Say what the step is doing now (e.g. which format it converts)."""


class Reporter:
    """Receives the steps; the base class ignores them."""

    def start(self, description: str, total: int | None) -> Step:
        return Step()

    def stop(self, step: Step) -> None:
        pass


_reporter = Reporter()


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Send the steps of everything run in the block to `reporter`."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield reporter
    finally:
        _reporter = previous


@contextlib.contextmanager
def step(description: str, total: int | None = None) -> Iterator[Step]:
    """A step of `total` units (None: of unknown length), reported from start to end."""
    reporter = _reporter
    current = reporter.start(description, total)
    try:
        yield current
    finally:
        reporter.stop(current)
