"""tune.json: every candidate, what was measured of it, where, and why it was dropped; the Pareto table.

The file is the search's state as well as its result: it is rewritten (atomically) after every probe and every
training, and `edgetl tune --resume` reads it back, so it is a pydantic schema, checked when read: a damaged file
is one line naming the field. This module imports pydantic; the CLI imports it only inside its commands.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgetl.errors import ModelFileError
from edgetl.files import atomic_write
from edgetl.tuning.settings import PERCENTILES
from edgetl.tuning.space import Candidate

TUNE_FILE = "tune.json"
TUNE_FILE_VERSION = 1
MB = 2**20

_CHECKED = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", validate_assignment=True)
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]
Milliseconds = Annotated[float, Field(ge=0.0)]
Count = Annotated[int, Field(ge=0, le=2**53)]


class Constraints(BaseModel):
    """The device's budget; None: not constrained."""

    model_config = _CHECKED
    max_latency_ms: Positive | None = None
    percentile: Annotated[str, Field(pattern="^(" + "|".join(PERCENTILES) + ")$")] = PERCENTILES[0]
    max_size_mb: Positive | None = None
    max_memory_mb: Positive | None = None

    def violations(self, measurements: list[Measurement]) -> list[str]:
        """Why the measured file does not fit, one reason per limit and place (empty: it fits everywhere)."""
        reasons = []
        for figure in measurements:
            latency = figure.p50_ms if self.percentile == "p50" else figure.p90_ms
            if self.max_latency_ms is not None and latency > self.max_latency_ms:
                reasons.append(f"{self.percentile} {latency:.2f} ms > {self.max_latency_ms:g} ms on {figure.place}")
            memory = None if figure.peak_rss_bytes is None else figure.peak_rss_bytes / MB
            if self.max_memory_mb is not None and memory is not None and memory > self.max_memory_mb:
                reasons.append(f"memory {memory:.1f} MB > {self.max_memory_mb:g} MB on {figure.place}")
        sizes = {figure.size_bytes for figure in measurements}
        if self.max_size_mb is not None and sizes and max(sizes) / MB > self.max_size_mb:
            reasons.insert(0, f"size {max(sizes) / MB:.2f} MB > {self.max_size_mb:g} MB")
        return reasons

    def describe(self) -> str:
        parts = []
        if self.max_latency_ms is not None:
            parts.append(f"{self.percentile} <= {self.max_latency_ms:g} ms")
        if self.max_size_mb is not None:
            parts.append(f"size <= {self.max_size_mb:g} MB")
        if self.max_memory_mb is not None:
            parts.append(f"memory <= {self.max_memory_mb:g} MB")
        return ", ".join(parts) or "no constraint"


class Measurement(BaseModel):
    """One file timed on one machine (batch 1); `host` is "local" or the board's user@host, `cpu` its CPU class
    (edgetl.runtime.cpu.cpu_class)."""

    model_config = _CHECKED
    host: str
    cpu: str
    runtime: str
    threads: Count | None
    p50_ms: Milliseconds
    p90_ms: Milliseconds
    peak_rss_bytes: Count | None
    size_bytes: Count

    @property
    def place(self) -> str:
        return f"{self.host} ({self.cpu})"


class Rung(BaseModel):
    """Stage 1 trained for `epochs` (successive halving); the validation accuracy of the weights kept."""

    model_config = _CHECKED
    epochs: Annotated[int, Field(ge=1)]
    val_accuracy: Share
    seconds: Milliseconds


class Final(BaseModel):
    """A finalist trained in full, exported with the usual ladder and verification, and benched again."""

    model_config = _CHECKED
    run: str  # the run directory, relative to the tune folder
    val_accuracy: Share
    test_accuracy: Share
    agreement: Share  # of the exported file with Keras on the run's test split
    measurements: list[Measurement]


class CandidateRecord(BaseModel):
    model_config = _CHECKED
    name: str
    backbone: str
    alpha: float | None
    image_size: Annotated[int, Field(ge=1)]
    hidden_units: Count
    # pending: not probed yet; fits: probed and within the constraints; dropped: see `dropped_at` and `reason`;
    # finished: trained in full, exported and benched again; winner: the most accurate finished one that fits.
    status: Literal["pending", "fits", "dropped", "finished", "winner"] = "pending"
    dropped_at: Literal["probe", "halving", "final", "budget"] | None = None
    reason: str | None = None
    probe: list[Measurement] = []
    rungs: list[Rung] = []
    final: Final | None = None

    @classmethod
    def of(cls, candidate: Candidate) -> CandidateRecord:
        return cls(name=candidate.name, **candidate.train_options)

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.backbone, self.alpha, self.image_size, self.hidden_units)

    def drop(self, stage: str, reason: str) -> None:
        self.status, self.dropped_at, self.reason = "dropped", stage, reason

    @property
    def val_accuracy(self) -> float | None:
        """The best word on its accuracy: the final training's, else the longest rung's."""
        if self.final is not None:
            return self.final.val_accuracy
        if self.rungs:
            return max(self.rungs, key=lambda rung: rung.epochs).val_accuracy
        return None

    def worst(self, percentile: str, final: bool = True) -> Measurement | None:
        """The measurement of the slowest place: of the trained file when there is one (and `final`), else of the
        untrained one."""
        figures = self.final.measurements if final and self.final is not None else self.probe
        if not figures:
            return None
        return max(figures, key=lambda m: m.p50_ms if percentile == "p50" else m.p90_ms)


class TuneOptions(BaseModel):
    """What the search was asked, kept so `--resume` continues the same search."""

    model_config = _CHECKED
    format: str
    threads: Annotated[int, Field(ge=1)] | None
    remotes: list[str]
    ssh_options: list[str]
    remote_python: str
    space: str
    budget_minutes: Positive
    epochs: Annotated[int, Field(ge=1)]
    fine_tune_epochs: Count
    weights: str
    finalists: Annotated[int, Field(ge=1)]
    eta: Annotated[int, Field(ge=2)]
    seed: int
    # Every candidate that fits trained in full, no halving: the reference a search is held to.
    exhaustive: bool = False
    train_options: dict[str, str | int | float | bool | None] = {}


class TuneFile(BaseModel):
    model_config = _CHECKED
    version: Literal[1] = TUNE_FILE_VERSION
    data: str
    constraints: Constraints
    options: TuneOptions
    cpu: str  # this machine's CPU class, where the "local" figures come from
    candidates: list[CandidateRecord]
    seconds: Milliseconds = 0.0  # search time spent so far, over every session
    winner: str | None = None
    finished: bool = False

    def record(self, name: str) -> CandidateRecord:
        return next(record for record in self.candidates if record.name == name)

    def write(self, folder: Path) -> None:
        atomic_write(Path(folder) / TUNE_FILE, self.model_dump_json(indent=1))


def read_tune_file(folder: Path) -> TuneFile:
    """A search's tune.json, checked: a damaged or hand-edited file is one line naming the field."""
    from edgetl.schemas import read_json

    path = Path(folder) / TUNE_FILE
    if not path.is_file():
        raise ModelFileError(f"{folder}: no {TUNE_FILE} to resume (start the search with `edgetl tune DATA --out DIR`)")
    raw = read_json(path, "tune.json")
    try:
        return TuneFile.model_validate(raw)
    except ValidationError as error:
        from edgetl.schemas import one_line

        raise ModelFileError(one_line(error, str(path), "tune.json", raw=raw)) from None


def pareto_front(records: list[CandidateRecord], percentile: str) -> list[CandidateRecord]:
    """The records with an accuracy that no other beats while being at least as fast: the choices worth making.
    Ordered fastest first."""
    scored = [
        (record, record.val_accuracy, record.worst(percentile))
        for record in records
        if record.val_accuracy is not None and record.worst(percentile) is not None
    ]

    def latency(measurement: Measurement) -> float:
        return measurement.p50_ms if percentile == "p50" else measurement.p90_ms

    front = []
    for record, accuracy, figure in scored:
        dominated = any(
            other_accuracy >= accuracy
            and latency(other_figure) <= latency(figure)
            and (other_accuracy > accuracy or latency(other_figure) < latency(figure))
            for other, other_accuracy, other_figure in scored
            if other is not record
        )
        if not dominated:
            front.append((latency(figure), record))
    return [record for _, record in sorted(front, key=lambda pair: pair[0])]


def _cell(value: float | None, pattern: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, pattern)


def tune_table(state: TuneFile, markdown: bool = False) -> str:
    """Every candidate: its latency (the slowest place), size, memory, validation accuracy and what became of it;
    Pareto-optimal ones marked `P`, the winner `W`."""
    percentile = state.constraints.percentile
    front = {record.name for record in pareto_front(state.candidates, percentile)}
    headings = ["", "candidate", f"{percentile} ms", "size MB", "memory MB", "val acc", "test acc", "outcome"]
    rows = []
    for record in state.candidates:
        figure = record.worst(percentile)
        latency = None if figure is None else (figure.p50_ms if percentile == "p50" else figure.p90_ms)
        memory = None if figure is None or figure.peak_rss_bytes is None else figure.peak_rss_bytes / MB
        mark = "W" if record.status == "winner" else "P" if record.name in front else ""
        outcome = record.status if record.status != "dropped" else f"dropped ({record.dropped_at}): {record.reason}"
        rows.append(
            [
                mark,
                record.name,
                _cell(latency, ".2f"),
                _cell(None if figure is None else figure.size_bytes / MB, ".2f"),
                _cell(memory, ".0f"),
                _cell(record.val_accuracy, ".4f"),
                _cell(None if record.final is None else record.final.test_accuracy, ".4f"),
                outcome,
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(headings) + " |", "|" + "---|" * len(headings)]
        return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])
    widths = [max(len(str(row[i])) for row in [headings, *rows]) for i in range(len(headings) - 1)]
    lines = []
    for row in [headings, *rows]:
        cells = [
            str(cell).rjust(width) if 1 < i < 7 else str(cell).ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
