"""The search: probe every candidate on the target, train the survivors with successive halving, finish the best.

1. Probe: each candidate's untrained file is built and timed (probe.py); those over the budget are dropped.
2. Halving: the survivors train stage 1 for a few epochs; the better 1/eta of them train again for eta times as
   many, and so on up to the full epochs (Jamieson & Talwalkar's successive halving). A rung's training is an
   ordinary `edgetl train` into DIR/runs/NAME.
3. Final: the best `finalists` train in full (fine-tuning included), are exported with the usual recipe ladder and
   verification, and are timed again; the most accurate that still fits is the winner, moved to DIR/winner.

tune.json is rewritten after every step, so an interrupted search (Ctrl-C, SIGTERM) loses at most the step it was
in; `--resume` skips what is done. The budget bounds probing and halving; once it is spent, the best candidate
found so far is still finished, so a search always ends with a winner when one fits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgetl.errors import EdgetlError
from edgetl.progress import step
from edgetl.tuning.result import CandidateRecord, Final, Rung, TuneFile

log = logging.getLogger(__name__)

RUNS_DIR = "runs"  # DIR/runs/NAME: each candidate's run while it trains
PROBES_DIR = "probes"  # DIR/probes/NAME: each candidate's untrained file
WINNER_DIR = "winner"  # the chosen model, an ordinary run directory
PLOT_FILE = "pareto.svg"


class TuneInterrupted(EdgetlError):
    """The search stopped (Ctrl-C, SIGTERM); tune.json holds what was done, for `edgetl tune --resume`."""


class NoCandidateFits(EdgetlError):
    """No candidate meets the constraints; the table of what was measured is in tune.json."""


def rung_epochs(epochs: int, survivors: int, finalists: int, eta: int) -> list[int]:
    """The epochs of each rung: the last trains `epochs`, each earlier one 1/eta of the next (at least one), with
    as many rungs as it takes to halve `survivors` down to `finalists`."""
    schedule = [epochs]
    count = survivors
    while count > finalists and schedule[0] // eta >= 1:
        schedule.insert(0, schedule[0] // eta)
        count = math.ceil(count / eta)
    return schedule


def promoted(scores: dict[str, float], keep: int, ties: bool = True) -> list[str]:
    """The `keep` best names, best first (ties in the order given). With `ties`, every name tied with the last one
    kept goes on too: a tie carries no information about which is better, and early rungs of networks trained from
    scratch often tie at chance accuracy, where a cut would keep whichever came first."""
    ranked = sorted(scores, key=lambda name: -scores[name])
    if not ties or len(ranked) <= keep:
        return ranked[:keep]
    return [name for name in ranked if scores[name] >= scores[ranked[keep - 1]]]


class CandidateFailed(EdgetlError):
    """A candidate cannot be built or trained as asked (a weights file that does not fit it): it is dropped with
    this message, and the search goes on."""


@dataclass
class Clock:
    """The search's time: what earlier sessions spent (from tune.json) plus this session's."""

    spent_before: float
    budget_seconds: float
    started: float = field(default_factory=time.perf_counter)

    @property
    def spent(self) -> float:
        return self.spent_before + time.perf_counter() - self.started

    @property
    def over(self) -> bool:
        return self.spent >= self.budget_seconds


@dataclass
class Steps:
    """What the search does to a candidate, so the halving and the bookkeeping can be tested without TensorFlow:
    `probe(record)` fills `record.probe`; `train(record, epochs)` returns the validation accuracy; `finish(record)`
    returns the Final record of its full training, export and timing."""

    probe: Callable[[CandidateRecord], None]
    train: Callable[[CandidateRecord, int], float]
    finish: Callable[[CandidateRecord], Final]


@contextlib.contextmanager
def interrupts_remembered() -> Iterator[Callable[[], bool]]:
    """Remember every Ctrl-C and SIGTERM while the block runs; yields whether one came.

    The handlers raise KeyboardInterrupt wherever Python is, and one raised inside a destructor (TensorFlow's
    functions have some) is printed and dropped: the search would go on. Remembered, it stops the search at the end
    of the step it arrived in. Handlers that are not Python functions (the default of SIGTERM outside the CLI) are
    left alone; so is every handler outside the main thread, where none can be set.
    """
    import signal
    import threading

    arrived = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(number)
            if callable(handler):

                def remember(signum, frame, handler=handler):
                    arrived.append(signum)
                    handler(signum, frame)

                previous[number] = handler
                signal.signal(number, remember)
    unraisable = sys.unraisablehook

    def quiet_when_remembered(details) -> None:
        # The interrupt Python drops in a destructor is remembered, so its "Exception ignored" trace is noise.
        if not (arrived and details.exc_type is KeyboardInterrupt):
            unraisable(details)

    sys.unraisablehook = quiet_when_remembered
    try:
        yield lambda: bool(arrived)
    finally:
        sys.unraisablehook = unraisable
        for number, handler in previous.items():
            signal.signal(number, handler)


def search(state: TuneFile, out: Path, steps: Steps, clock: Clock, exhaustive: bool = False) -> TuneFile:
    """Run (or continue) the search in `state`, writing it to `out`/tune.json after each step."""
    with interrupts_remembered() as interrupted:

        def save() -> None:
            state.seconds = clock.spent
            state.write(out)
            if interrupted():
                raise KeyboardInterrupt

        return _search(state, out, steps, clock, exhaustive, save)


def _search(
    state: TuneFile, out: Path, steps: Steps, clock: Clock, exhaustive: bool, save: Callable[[], None]
) -> TuneFile:
    try:
        _probe_all(state, steps, clock, save)
        fitting = [record for record in state.candidates if record.status in ("fits", "finished", "winner")]
        if not fitting:
            save()
            raise NoCandidateFits(f"no candidate meets {state.constraints.describe()}")
        if exhaustive:
            finalists = [record for record in fitting if record.status == "fits"]
        else:
            finalists = _halve(state, fitting, steps, clock, save)
        _finish(state, finalists, steps, save)
        _choose_winner(state, out)
        state.finished = True
        save()
        return state
    except KeyboardInterrupt:
        state.seconds = clock.spent
        state.write(out)
        raise TuneInterrupted(
            f"{out}: search interrupted after {clock.spent / 60:.1f} min; what was done is in {out}/tune.json: "
            f"continue with `edgetl tune --resume {out}`"
        ) from None


def _probe_all(state: TuneFile, steps: Steps, clock: Clock, save: Callable[[], None]) -> None:
    pending = [record for record in state.candidates if record.status == "pending"]
    with step("probing candidates on the target", total=len(pending)) as probing:
        for record in pending:
            if clock.over:
                record.drop("budget", "not probed: the time budget ran out")
                save()
                continue
            probing.describe(f"probing {record.name}")
            try:
                steps.probe(record)
            except CandidateFailed as error:
                record.drop("probe", str(error))
                save()
                continue
            reasons = state.constraints.violations(record.probe)
            if reasons:
                record.drop("probe", "; ".join(reasons))
            else:
                record.status = "fits"
            save()
            probing.advance()


def _halve(
    state: TuneFile, fitting: list[CandidateRecord], steps: Steps, clock: Clock, save: Callable[[], None]
) -> list[CandidateRecord]:
    """Successive halving over the candidates that fit; returns the finalists, best first."""
    options = state.options
    # Every count derives from how many passed the probe, not from who is left, so a resumed search keeps as many
    # at each rung as the first session would have.
    passed = len([record for record in state.candidates if record.probe and record.dropped_at != "probe"])
    schedule = rung_epochs(options.epochs, passed, options.finalists, options.eta)
    counts = [passed]
    for _ in schedule[:-1]:
        counts.append(max(options.finalists, math.ceil(counts[-1] / options.eta)))
    alive = [record for record in fitting if record.status == "fits"]
    finished = [record for record in fitting if record.status != "fits"]
    for number, epochs in enumerate(schedule):
        alive = [record for record in alive if record.status == "fits"]
        scores = {}
        with step(f"rung {number + 1}/{len(schedule)}: {epochs} epoch(s)", total=len(alive)) as rung:
            for record in alive:
                done = next((r for r in record.rungs if r.epochs == epochs), None)
                if done is None:
                    if clock.over:
                        continue
                    rung.describe(f"rung {number + 1}/{len(schedule)}: training {record.name} for {epochs} epoch(s)")
                    began = time.perf_counter()
                    try:
                        accuracy = steps.train(record, epochs)
                    except CandidateFailed as error:
                        record.drop("halving", str(error))
                        save()
                        continue
                    done = Rung(epochs=epochs, val_accuracy=accuracy, seconds=time.perf_counter() - began)
                    record.rungs.append(done)
                    save()
                scores[record.name] = done.val_accuracy
                rung.advance()
        if clock.over:
            # The rung was cut short: who trained at it is ranked by it, the rest by the longest rung they had; only
            # the best goes on, to be finished.
            scores.update(
                {r.name: r.val_accuracy for r in alive if r.name not in scores and r.val_accuracy is not None}
            )
            keep = 1
        elif number == len(schedule) - 1:
            keep = options.finalists
        else:
            keep = counts[number + 1]
        best = promoted(scores, keep, ties=not clock.over) if scores else [record.name for record in alive[:1]]
        for record in alive:
            if record.name in best or record.status != "fits":
                continue
            if record.name in scores:
                record.drop(
                    "halving",
                    f"val acc {scores[record.name]:.4f} after {_epochs_of(record)} epoch(s), below the best {keep}",
                )
            else:
                record.drop("budget", "not trained: the time budget ran out")
        alive = [record for record in alive if record.name in best]
        alive.sort(key=lambda record: best.index(record.name))
        save()
        if clock.over:
            break
    return [record for record in alive if record.status == "fits"] + finished


def _epochs_of(record: CandidateRecord) -> int:
    return max((rung.epochs for rung in record.rungs), default=0)


def _finish(state: TuneFile, finalists: list[CandidateRecord], steps: Steps, save: Callable[[], None]) -> None:
    with step("finishing the finalists", total=len(finalists)) as finishing:
        for record in finalists:
            if record.final is None:
                finishing.describe(f"training, exporting and timing {record.name}")
                record.final = steps.finish(record)
                reasons = state.constraints.violations(record.final.measurements)
                if reasons:
                    record.drop("final", "trained file: " + "; ".join(reasons))
                else:
                    record.status = "finished"
                save()
            finishing.advance()


def _choose_winner(state: TuneFile, out: Path) -> None:
    finished = [record for record in state.candidates if record.status in ("finished", "winner")]
    if not finished:
        raise NoCandidateFits(
            f"no finished candidate meets {state.constraints.describe()} once trained and exported (see the table)"
        )
    winner = max(finished, key=lambda record: record.final.val_accuracy if record.final else 0.0)
    for record in finished:
        record.status = "winner" if record is winner else "finished"
    assert winner.final is not None
    destination = out / WINNER_DIR
    source = out / winner.final.run
    if source.resolve() != destination.resolve():
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(source, destination)
        winner.final.run = WINNER_DIR
    state.winner = winner.name


def validation_accuracy(run: Path) -> float:
    """The validation accuracy of the weights a run kept: early stopping restores the epoch of least validation
    loss, so the accuracy of that epoch, in the last stage trained."""
    history = json.loads((run / "history.json").read_text(encoding="utf-8"))
    stage = history["stage2"] if history.get("stage2", {}).get("val_loss") else history["stage1"]
    losses, accuracies = stage["val_loss"], stage["val_accuracy"]
    best = min(range(len(losses)), key=lambda index: losses[index])
    return float(accuracies[best])
