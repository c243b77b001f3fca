"""One `edgetl tune`: check the request, lay out DIR, wire the real steps (probe, train, finish) into the search,
and leave tune.json, the Pareto table and plot, and DIR/winner behind."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edgetl.benchmark.settings import SshSettings
from edgetl.errors import EdgetlError, TrainingInterrupted, UsageError, WeightsError
from edgetl.tuning.result import (
    TUNE_FILE,
    CandidateRecord,
    Constraints,
    Final,
    TuneFile,
    TuneOptions,
    pareto_front,
    read_tune_file,
    tune_table,
)
from edgetl.tuning.search import (
    PLOT_FILE,
    PROBES_DIR,
    RUNS_DIR,
    WINNER_DIR,
    CandidateFailed,
    Clock,
    NoCandidateFits,
    Steps,
    search,
    validation_accuracy,
)
from edgetl.tuning.space import parse_space

log = logging.getLogger(__name__)

# The train options a search sets itself, per candidate and rung; the rest of TrainConfig passes through.
SEARCH_SET = ("data_dir", "backbone", "alpha", "image_size", "hidden_units", "epochs", "fine_tune_epochs", "weights")


@dataclass(frozen=True)
class TuneResult:
    """A finished search: its folder, its state (every candidate), the plot, and the winner's run directory."""

    out: Path
    state: TuneFile
    plot: Path

    @property
    def winner(self) -> CandidateRecord | None:
        return next((record for record in self.state.candidates if record.status == "winner"), None)

    @property
    def winner_run(self) -> Path | None:
        return None if self.winner is None else self.out / WINNER_DIR

    def summary(self) -> list[str]:
        """The table, then the winner, as `edgetl tune` prints them."""
        state = self.state
        lines = [tune_table(state), "W: winner, P: on the Pareto front (validation accuracy against latency)"]
        winner = self.winner
        if winner is not None and winner.final is not None:
            figure = winner.worst(state.constraints.percentile)
            latency = "" if figure is None else f", {state.constraints.percentile} {_latency(figure, state):.2f} ms"
            lines.append(
                f"winner {winner.name}: val acc {winner.final.val_accuracy:.4f}, test acc "
                f"{winner.final.test_accuracy:.4f}{latency} ({state.options.format}; {state.constraints.describe()})"
            )
            gate = _agreement_gate(state.options.format)
            if winner.final.agreement < gate:
                lines.append(
                    f"note: its {state.options.format} file agrees with Keras on {winner.final.agreement:.4f} of the "
                    f"test images, below the {gate:.2f} gate of `edgetl export` (see winner/exports.json)"
                )
            lines.append(f"run written to {self.out / WINNER_DIR}; search took {state.seconds / 60:.1f} min")
        lines.append(f"plot: {self.plot}; every candidate in {self.out / TUNE_FILE}")
        return lines


def _agreement_gate(format_name: str) -> float:
    from edgetl.exporting.formats import FORMATS

    return FORMATS[format_name].min_agreement


def _latency(figure, state: TuneFile) -> float:
    return figure.p50_ms if state.constraints.percentile == "p50" else figure.p90_ms


def check_format(format_name: str) -> None:
    from edgetl.tuning.targets import TUNABLE_FORMATS

    if format_name not in TUNABLE_FORMATS:
        raise UsageError(
            f"--format {format_name}: a search times single files; choose one of {', '.join(TUNABLE_FORMATS)}"
        )


def check_weights(options: TuneOptions, first: CandidateRecord) -> None:
    """Fail before any probe when the weights cannot be had: ImageNet weights without a network, a missing file;
    a fine-tune asked of backbones that train from scratch."""
    from edgetl.models.backbones import get_backbone
    from edgetl.models.classifier import build_backbone
    from edgetl.tfquiet import import_tensorflow_quietly

    if options.fine_tune_epochs and options.weights == "none":
        raise UsageError("--fine-tune-epochs needs pretrained --weights (imagenet or a file), not none")
    if options.weights == "none":
        return
    if options.weights != "imagenet" and not Path(options.weights).is_file():
        raise WeightsError(f"--weights {options.weights}: no such file (use imagenet, none, or a weights file)")
    if options.weights == "imagenet":
        import_tensorflow_quietly()
        build_backbone(get_backbone(first.backbone), first.image_size, first.alpha, "imagenet")


def _read_dataset(data: str, options: TuneOptions):
    """The dataset as `edgetl train` reads it, with the layout options the search passes on."""
    from edgetl.data.layouts import read_dataset
    from edgetl.data.options import LayoutOptions

    given = options.train_options
    layout_options = {key: value for key, value in given.items() if key in LayoutOptions.__dataclass_fields__}
    return read_dataset(data, str(given.get("layout", "auto")), LayoutOptions(**layout_options))


class RealSteps:
    """The search's steps done for real: TensorFlow, the export ladder, the device bench, `edgetl train`."""

    def __init__(self, state: TuneFile, out: Path) -> None:
        from edgetl.data.dataset import write_array_files
        from edgetl.tuning.probe import probe_data

        self.state, self.out = state, out
        options = state.options
        dataset = _read_dataset(state.data, options)
        split = dataset.split or write_array_files(dataset, out / "probe-data", options.seed)
        self.data = probe_data(split, out)
        self.ssh = SshSettings(options=tuple(options.ssh_options), python=options.remote_python)

    def steps(self) -> Steps:
        return Steps(self.probe, self.train, self.finish)

    def probe(self, record: CandidateRecord) -> None:
        from edgetl.tuning.probe import build_untrained_file, time_file

        options = self.state.options
        if options.weights not in ("imagenet", "none"):
            self._check_weights_fit(record)
        folder = self.out / PROBES_DIR / record.name
        path = build_untrained_file(record.candidate, self.data, options.format, folder)
        record.probe = time_file(path, self.data, options.threads, options.remotes, self.ssh)

    def _check_weights_fit(self, record: CandidateRecord) -> None:
        from edgetl.models.backbones import get_backbone
        from edgetl.models.classifier import build_backbone

        try:
            build_backbone(get_backbone(record.backbone), record.image_size, record.alpha, self.state.options.weights)
        except (WeightsError, ValueError) as error:
            reason = str(error).splitlines()[0][:160]
            raise CandidateFailed(f"--weights {self.state.options.weights} does not fit it ({reason})") from None

    def _train(self, record: CandidateRecord, epochs: int, fine_tune_epochs: int) -> Path:
        from edgetl.config import TrainConfig
        from edgetl.training.fit import train

        options = self.state.options
        run = self.out / RUNS_DIR / record.name
        config = TrainConfig.from_options(
            self.state.data,
            **options.train_options,
            **record.candidate.train_options,
            epochs=epochs,
            fine_tune_epochs=fine_tune_epochs,
            weights=options.weights,
        )
        try:
            train(config, run, overwrite=True, verbose=False)
        except TrainingInterrupted:
            raise KeyboardInterrupt from None
        except WeightsError as error:
            raise CandidateFailed(str(error)) from None
        return run

    def train(self, record: CandidateRecord, epochs: int) -> float:
        return validation_accuracy(self._train(record, epochs, 0))

    def finish(self, record: CandidateRecord) -> Final:
        from edgetl.exporting.exporter import export_run
        from edgetl.exporting.formats import FORMATS
        from edgetl.run import RunDir
        from edgetl.tuning.probe import time_file

        options = self.state.options
        run = self.out / RUNS_DIR / record.name
        trained_in_full = (
            options.fine_tune_epochs == 0
            and any(rung.epochs == options.epochs for rung in record.rungs)
            and RunDir(run).model.is_file()
            and RunDir(run).read_config().epochs == options.epochs
        )
        if not trained_in_full:
            self._train(record, options.epochs, options.fine_tune_epochs)
        (exported,) = export_run(run, [options.format])
        path = RunDir(run).exports_dir / FORMATS[options.format].filename
        metrics = json.loads(RunDir(run).metrics.read_text(encoding="utf-8"))
        return Final(
            run=f"{RUNS_DIR}/{record.name}",
            val_accuracy=validation_accuracy(run),
            test_accuracy=float(metrics["test_accuracy"]),
            agreement=exported.agreement,
            measurements=time_file(path, self.data, options.threads, options.remotes, self.ssh),
        )


def write_plot(state: TuneFile, out: Path) -> Path:
    from edgetl.files import atomic_write
    from edgetl.reporting.svg import Point, standalone_scatter

    percentile = state.constraints.percentile
    front = {record.name for record in pareto_front(state.candidates, percentile)}
    points = []
    for record in state.candidates:
        figure, accuracy = record.worst(percentile), record.val_accuracy
        if figure is None or accuracy is None:
            continue
        size_mb = figure.size_bytes / 2**20
        group = "winner" if record.status == "winner" else "Pareto front" if record.name in front else "other"
        points.append(
            Point(
                _latency(figure, state),
                accuracy,
                f"{record.name}: {accuracy:.4f}, {size_mb:.2f} MB",
                group,
                _size_class(size_mb),
            )
        )
    limits = [] if state.constraints.max_latency_ms is None else [state.constraints.max_latency_ms]
    where = ", ".join(sorted({m.place for r in state.candidates for m in r.probe})) or "here"
    svg = standalone_scatter(
        points,
        f"edgetl tune: {state.options.format} on {where}",
        f"{percentile} latency, ms (batch 1; dashed: the budget)",
        "validation accuracy",
        x_limits=limits,
    )
    path = out / PLOT_FILE
    atomic_write(path, svg)
    return path


# Marker shapes by file size: the plot's third dimension.
SIZE_CLASSES = ((1.0, "< 1 MB"), (4.0, "1-4 MB"), (16.0, "4-16 MB"), (float("inf"), ">= 16 MB"))


def _size_class(size_mb: float) -> str:
    return next(label for limit, label in SIZE_CLASSES if size_mb < limit)


def _run(state: TuneFile, out: Path) -> TuneResult:
    from edgetl.runtime.cpu import cpu_class

    if state.cpu != cpu_class():
        log.warning("%s: earlier figures came from a %s CPU, this one is %s", out / TUNE_FILE, state.cpu, cpu_class())
    steps = RealSteps(state, out)
    clock = Clock(state.seconds, state.options.budget_minutes * 60)
    try:
        search(state, out, steps.steps(), clock, exhaustive=state.options.exhaustive)
    except NoCandidateFits as error:
        write_plot(state, out)
        raise NoCandidateFits(f"{error}; what was measured:\n{tune_table(state)}") from None
    return TuneResult(out, state, write_plot(state, out))


def start(data: str, out: Path, constraints: Constraints, options: TuneOptions) -> TuneResult:
    from edgetl.runtime.cpu import cpu_class

    out = Path(out)
    if (out / TUNE_FILE).exists():
        raise EdgetlError(
            f"{out}: holds a search already; continue it with `edgetl tune --resume {out}` or choose a new --out"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EdgetlError(f"{out}: exists and is not an empty folder; choose a new --out")
    check_format(options.format)
    space = parse_space(options.space)
    records = [CandidateRecord.of(candidate) for candidate in space.candidates()]
    _read_dataset(data, options)  # unusable data is refused before DIR is made
    check_weights(options, records[0])
    state = TuneFile(data=data, constraints=constraints, options=options, cpu=cpu_class(), candidates=records)
    out.mkdir(parents=True, exist_ok=True)
    state.write(out)
    return _run(state, out)


def resume(out: Path) -> TuneResult:
    out = Path(out)
    state = read_tune_file(out)
    if state.finished:
        return TuneResult(out, state, write_plot(state, out))
    # A candidate's half-written probe or run is redone from its start: its step was not recorded.
    return _run(state, out)
