"""Successive halving, the budget, constraint filtering, resume and Ctrl-C, with fake steps (no TensorFlow): a
candidate's latency and accuracy are functions of its size and width."""

from __future__ import annotations

import pytest

from edgetl.tuning.result import Constraints, Final, TuneFile, read_tune_file
from edgetl.tuning.search import (
    CandidateFailed,
    Clock,
    NoCandidateFits,
    Steps,
    TuneInterrupted,
    promoted,
    rung_epochs,
    search,
)
from edgetl.tuning.space import parse_space
from tests.tuning.test_result import measured, options

SPACE = "backbone=mobilenetv2;alpha=0.35,0.5,0.75,1.0;size=32,48,64,96"  # 16 candidates


class FakeSteps:
    """Latency grows with pixels and width; accuracy with both too, and with epochs, so the best that fits is
    known in advance. Records every call; can be told to raise Ctrl-C at a given training."""

    def __init__(self, interrupt_at_training: int | None = None, failing: tuple[str, ...] = ()) -> None:
        self.probed: list[str] = []
        self.trained: list[tuple[str, int]] = []
        self.finished: list[str] = []
        self.interrupt_at_training = interrupt_at_training
        self.failing = failing

    @staticmethod
    def latency(record) -> float:
        return record.image_size**2 * record.alpha / 1000

    @staticmethod
    def accuracy(record, epochs: int) -> float:
        return min(1.0, 0.3 + record.image_size / 400 + record.alpha / 10 + epochs / 100)

    def probe(self, record) -> None:
        self.probed.append(record.name)
        if record.name in self.failing:
            raise CandidateFailed("--weights w.h5 does not fit it")
        record.probe = [measured(self.latency(record))]

    def train(self, record, epochs: int) -> float:
        if self.interrupt_at_training is not None and len(self.trained) == self.interrupt_at_training:
            raise KeyboardInterrupt
        self.trained.append((record.name, epochs))
        return self.accuracy(record, epochs)

    def finish(self, record) -> Final:
        self.finished.append(record.name)
        accuracy = self.accuracy(record, 10)
        return Final(
            run=f"runs/{record.name}",
            val_accuracy=accuracy,
            test_accuracy=accuracy - 0.01,
            agreement=0.99,
            measurements=[measured(self.latency(record) * 1.05)],
        )

    def steps(self) -> Steps:
        return Steps(self.probe, self.train, self.finish)


def new_state(max_latency_ms: float | None = 3.0, **changes) -> TuneFile:
    from edgetl.tuning.result import CandidateRecord

    candidates = [CandidateRecord.of(c) for c in parse_space(SPACE).candidates()]
    return TuneFile(
        data="/data",
        constraints=Constraints(max_latency_ms=max_latency_ms),
        options=options(space=SPACE, epochs=8, **changes),
        cpu="x86-64 VNNI",
        candidates=candidates,
    )


def run(state: TuneFile, out, fake: FakeSteps, budget_s: float = 3600.0, exhaustive: bool = False) -> TuneFile:
    # The winner's run is moved to out/winner: give each finished candidate a folder, as a real run would have.
    for record in state.candidates:
        (out / "runs" / record.name).mkdir(parents=True, exist_ok=True)
    return search(state, out, fake.steps(), Clock(state.seconds, budget_s), exhaustive=exhaustive)


def test_rung_schedule_halves_down_to_the_finalists():
    assert rung_epochs(8, 16, 2, 2) == [1, 2, 4, 8]
    assert rung_epochs(8, 4, 2, 2) == [4, 8]
    assert rung_epochs(8, 2, 2, 2) == [8]
    assert rung_epochs(2, 16, 2, 2) == [1, 2]  # never below one epoch
    assert rung_epochs(9, 27, 1, 3) == [1, 3, 9]
    assert promoted({"a": 0.5, "b": 0.9, "c": 0.7, "d": 0.9}, 3) == ["b", "d", "c"]
    # A tie at the cut carries no information: all tied go on (but not when the budget forces one choice).
    assert promoted({"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.05}, 1) == ["a", "b", "c"]
    assert promoted({"a": 0.5, "b": 0.9, "c": 0.5}, 2) == ["b", "a", "c"]
    assert promoted({"a": 0.1, "b": 0.1}, 1, ties=False) == ["a"]


def test_the_search_drops_what_is_too_slow_then_halves_and_finishes_the_best(tmp_path):
    fake = FakeSteps()
    state = run(new_state(), tmp_path, fake)

    fits = [r for r in state.candidates if FakeSteps.latency(r) <= 3.0]
    assert len(fake.probed) == 16
    for record in state.candidates:
        if record not in fits:
            assert record.dropped_at == "probe" and record.reason.startswith("p50 ")
    # Rungs: every candidate that fits at the first, half as many (at least the finalists) at each next one.
    epochs_trained = [epochs for _, epochs in fake.trained]
    assert epochs_trained.count(1) == len(fits)
    assert rung_epochs(8, len(fits), 2, 2)[0] == 1
    assert epochs_trained.count(8) == 2
    assert len(fake.trained) < len(fits) * 4  # far fewer trainings than training all at every rung
    # The winner is the most accurate that fits, as an exhaustive search finds it.
    best = max(fits, key=lambda r: FakeSteps.accuracy(r, 10))
    assert state.winner == best.name and state.record(best.name).status == "winner"
    assert (tmp_path / "winner").is_dir() and state.record(best.name).final.run == "winner"
    assert len(fake.finished) == 2 and state.finished
    assert read_tune_file(tmp_path) == state
    halved = [r for r in state.candidates if r.dropped_at == "halving"]
    assert halved and all("below the best" in r.reason for r in halved)
    assert (tmp_path / "tune.json").is_file()


def test_exhaustive_trains_every_candidate_that_fits_and_finds_the_same_winner(tmp_path):
    halving = run(new_state(), tmp_path / "halving", FakeSteps())
    fake = FakeSteps()
    everything = run(new_state(exhaustive=True), tmp_path / "all", fake, exhaustive=True)
    assert everything.winner == halving.winner
    assert fake.trained == [] and len(fake.finished) == len([r for r in everything.candidates if r.final])


def test_a_constraint_no_candidate_meets_ends_with_a_clear_error(tmp_path):
    fake = FakeSteps()
    state = new_state(max_latency_ms=0.01)
    with pytest.raises(NoCandidateFits, match="no candidate meets p50 <= 0.01 ms"):
        run(state, tmp_path, fake)
    assert fake.trained == []
    assert all(r.dropped_at == "probe" for r in read_tune_file(tmp_path).candidates)


def test_a_candidate_that_cannot_be_built_is_dropped_with_the_reason(tmp_path):
    fake = FakeSteps(failing=("mobilenetv2-0.35-32px",))
    state = run(new_state(), tmp_path, fake)
    dropped = state.record("mobilenetv2-0.35-32px")
    assert dropped.dropped_at == "probe" and dropped.reason == "--weights w.h5 does not fit it"
    assert state.winner is not None


def test_no_budget_at_all_probes_nothing_and_says_so(tmp_path):
    fake = FakeSteps()
    with pytest.raises(NoCandidateFits):
        run(new_state(), tmp_path, fake, budget_s=0.0)
    assert fake.probed == []
    saved = read_tune_file(tmp_path)
    assert {(r.dropped_at, r.reason) for r in saved.candidates} == {("budget", "not probed: the time budget ran out")}


def test_the_budget_stops_halving_and_the_best_so_far_is_finished(tmp_path, monkeypatch):
    fake = FakeSteps()
    state = new_state()
    clock = Clock(0.0, 3600.0)
    original = fake.train

    def train_then_run_out(record, epochs):
        accuracy = original(record, epochs)
        if len(fake.trained) == 3:
            clock.spent_before = 7200.0  # the budget is gone after the third training
        return accuracy

    fake.train = train_then_run_out
    for record in state.candidates:
        (tmp_path / "runs" / record.name).mkdir(parents=True, exist_ok=True)
    search(state, tmp_path, fake.steps(), clock)
    assert len(fake.trained) == 3 and len(fake.finished) == 1
    trained_names = [name for name, _ in fake.trained]
    assert state.winner in trained_names
    untrained = [r for r in state.candidates if r.status == "dropped" and r.dropped_at == "budget"]
    assert untrained and all(r.reason == "not trained: the time budget ran out" for r in untrained)


def test_candidates_tied_at_chance_in_the_first_rung_all_go_on(tmp_path):
    fake = FakeSteps()
    real_accuracy = FakeSteps.accuracy

    def at_chance_after_one_epoch(record, epochs):
        return 0.1 if epochs == 1 else real_accuracy(record, epochs)

    fake.accuracy = at_chance_after_one_epoch
    state = run(new_state(), tmp_path, fake)
    first_rung = [name for name, epochs in fake.trained if epochs == 1]
    second_rung = [name for name, epochs in fake.trained if epochs == 2]
    assert sorted(second_rung) == sorted(first_rung)  # nobody cut on a tie
    fits = [r for r in state.candidates if FakeSteps.latency(r) <= 3.0]
    assert state.winner == max(fits, key=lambda r: real_accuracy(r, 10)).name


def test_ctrl_c_leaves_a_resumable_state_and_resume_skips_what_is_done(tmp_path):
    interrupted = FakeSteps(interrupt_at_training=4)
    with pytest.raises(TuneInterrupted, match=f"continue with `edgetl tune --resume {tmp_path}`"):
        run(new_state(), tmp_path, interrupted)
    saved = read_tune_file(tmp_path)
    assert not saved.finished
    assert sum(len(r.rungs) for r in saved.candidates) == 4
    assert all(r.status != "pending" for r in saved.candidates)  # every probe was kept

    resumed = FakeSteps()
    state = run(saved, tmp_path, resumed)
    assert resumed.probed == []  # no candidate probed twice
    assert not set(interrupted.trained) & set(resumed.trained)  # no rung trained twice
    reference = FakeSteps()
    uninterrupted = run(new_state(), tmp_path / "again", reference)
    assert sorted(interrupted.trained + resumed.trained) == sorted(reference.trained)
    assert state.winner == uninterrupted.winner and state.finished


@pytest.fixture
def sigint_as_in_a_terminal():
    """SIGINT raising KeyboardInterrupt, as when Python starts in a terminal: a shell's background job (`make test
    &`) inherits it ignored."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_swallowed_inside_a_step_still_stops_the_search_after_it(tmp_path, sigint_as_in_a_terminal):
    """A KeyboardInterrupt raised inside a destructor is printed and dropped by Python; the search remembers the
    signal and stops when the step ends."""
    import os
    import signal

    fake = FakeSteps()
    original = fake.train

    def train_swallowing_an_interrupt(record, epochs):
        if len(fake.trained) == 2:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # the handler runs between bytecodes of this thread
                    pass
            except KeyboardInterrupt:
                pass  # as a destructor's exception is dropped
        return original(record, epochs)

    fake.train = train_swallowing_an_interrupt
    with pytest.raises(TuneInterrupted):
        run(new_state(), tmp_path, fake)
    assert len(fake.trained) == 3  # the step it arrived in finished, and was saved
    assert sum(len(r.rungs) for r in read_tune_file(tmp_path).candidates) == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
