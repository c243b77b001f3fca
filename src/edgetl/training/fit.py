"""`edgetl train`: read the data in whatever layout, train in one or two stages, evaluate, report, write the run.

Stage 1 trains the head with the backbone frozen (with `--weights none`, the whole network from scratch).
Stage 2 (`fine_tune_epochs`) unfreezes the top of a pretrained backbone at a lower learning rate. Every epoch
ends with a checkpoint in RUN/checkpoint/; model.keras is written last, so a run that has it is finished.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.config import CLASS_WEIGHTS, TrainConfig
from edgetl.data.dataset import Dataset, choose_cache, stream_dataset_subset, write_array_files
from edgetl.data.layouts import ARRAY_LAYOUTS, read_dataset
from edgetl.data.pipeline import DecodedSubset, StreamedSubset, to_dataset
from edgetl.data.split import SUBSETS
from edgetl.errors import DataError, EdgetlError, MissingExtraError, TrainingInterrupted
from edgetl.files import atomic_write, refuse_links, temporary_sibling
from edgetl.models.backbones import BackboneSpec, get_backbone
from edgetl.models.classifier import HeadConfig, build_classifier
from edgetl.progress import step
from edgetl.run import RunDir
from edgetl.runtime.metadata import ModelMetadata
from edgetl.tfquiet import import_tensorflow_quietly
from edgetl.training.checkpoint import (
    TRAINING_DONE,
    CheckpointState,
    load_checkpoint,
    read_state,
    save_checkpoint,
)
from edgetl.training.strategy import WorkerRole, worker_role

log = logging.getLogger(__name__)


Subset = DecodedSubset | StreamedSubset


@dataclass(frozen=True)
class TrainResult:
    run: RunDir
    class_names: list[str]
    layout: str
    test_accuracy: float
    counts: dict[str, int]
    skipped: int
    epochs: dict[str, int]  # epochs run per stage
    feature_cache: bool
    seconds: float
    stage_seconds: dict[str, float]  # wall time of each stage trained in this process, tracing included
    cache: str = "memory"  # where decoded pixels were kept: memory, disk or none
    worker: WorkerRole = WorkerRole()  # counts are this worker's shard when there are several

    @property
    def epochs_run(self) -> int:
        return sum(self.epochs.values())

    def summary(self) -> list[str]:
        """What was trained, on what, how long it took and where it went, as `edgetl train` prints it."""
        counts = ", ".join(f"{name} {count}" for name, count in self.counts.items())
        if not self.worker.chief:
            return [
                f"worker {self.worker.index} of {self.worker.count} trained on its shard ({counts} images) in "
                f"{self.seconds:.0f} s; the chief writes the run"
            ]
        config = self.run.read_config()
        stages = " + ".join(f"{epochs}" for epochs in self.epochs.values() if epochs)
        timings = ", ".join(f"stage {name[-1]} {seconds:.1f} s" for name, seconds in self.stage_seconds.items())
        lines = [
            f"trained {config.backbone} on {len(self.class_names)} classes ({self.layout} layout; {counts} images) "
            f"in {stages} epochs{' (stage 1 on cached features)' if self.feature_cache else ''}, "
            f"{self.seconds:.0f} s" + (f" ({timings})" if timings else "")
        ]
        if self.skipped:
            lines.append(f"skipped {self.skipped} unreadable image file(s) (listed in {self.run.metrics})")
        lines.append(f"test accuracy {self.test_accuracy:.4f}")
        lines.append(f"run written to {self.run.path} (reports in {self.run.report_dir})")
        return lines


def check_config(config: TrainConfig) -> BackboneSpec:
    spec = get_backbone(config.backbone)
    spec.check(config.image_size, config.alpha)
    if config.fine_tune_epochs and config.weights == "none":
        raise EdgetlError(
            "--fine-tune-epochs needs a pretrained backbone (--weights imagenet or a file): "
            "with --weights none stage 1 already trains the whole network"
        )
    if config.fine_tune_layers is not None and config.fine_tune_from is not None:
        raise EdgetlError("--fine-tune-layers and --fine-tune-from choose the same thing: pass only one")
    if config.class_weight not in CLASS_WEIGHTS:
        raise EdgetlError(f"--class-weight {config.class_weight}: choose {' or '.join(CLASS_WEIGHTS)}")
    for module in ("matplotlib", "sklearn"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(module, "train", "edgetl train's reports")
    return spec


def check_output(run: RunDir, overwrite: bool) -> None:
    """Everything about the output folder that can be checked before a file is deleted or written: --overwrite
    deletes only after this (and the data's own checks) passed."""
    if run.path.exists() and not run.path.is_dir():
        raise EdgetlError(f"{run.path}: exists and is not a folder")
    if run.path.is_dir():
        refuse_links(run.path, *run_paths(run))
    if overwrite:
        return
    if run.model.exists():
        raise EdgetlError(f"{run.path}: already holds a trained model; choose a new --out or pass --overwrite")
    if (run.checkpoint_dir / "state.json").exists():
        raise EdgetlError(
            f"{run.path}: holds an interrupted run; continue it with `edgetl train --resume {run.path}` "
            f"or pass --overwrite"
        )


def run_paths(run: RunDir) -> list[Path]:
    """Every file and folder `train` writes or, with --overwrite, deletes in a run."""
    files = [run.model, run.labels, run.config, run.preprocessing, run.split, run.history, run.metrics]
    folders = [run.checkpoint_dir, run.exports_dir, run.report_dir, run.bench_dir, run.array_data_dir]
    return [*files, run.exports_index, *folders, run.cache_dir]


def clear_previous(run: RunDir) -> None:
    """--overwrite: the old model goes first, so the folder never pairs it with the new run's files; then what was
    made from it (exports, whose index goes before the files it lists; figures), which would describe another model."""
    run.model.unlink(missing_ok=True)
    for stale in (run.exports_index, run.metrics, run.history):
        stale.unlink(missing_ok=True)
    for folder in (run.checkpoint_dir, run.exports_dir, run.report_dir, run.bench_dir, run.array_data_dir):
        if folder.is_dir():
            shutil.rmtree(folder)


def stream_all(dataset: Dataset, image_size: int, cache: str, folder: Path, role: WorkerRole) -> dict[str, Subset]:
    """Check and cache each subset: train and validation as this worker's shard; test (the chief's evaluation)
    whole, and only on the chief."""
    subsets = {}
    for name in SUBSETS:
        if name == "test" and not role.chief:
            continue
        shard = (role.index, role.count) if name != "test" else (0, 1)
        subsets[name] = stream_dataset_subset(dataset, name, image_size, cache, folder, shard)
        if len(subsets[name].labels) == 0:
            where = f" in worker {role.index}'s shard" if role.count > 1 else ""
            raise DataError(f"{dataset.source}: no {name} image could be decoded{where}")
    return subsets


def work_run(run: RunDir, role: WorkerRole) -> RunDir:
    """Where this process writes: the run for the chief; for another worker, a temporary folder of its own (its
    checkpoints are never read: only the chief's state is the run's), removed when training ends."""
    if role.chief:
        return run
    return RunDir(Path(tempfile.mkdtemp(prefix=f"edgetl-worker{role.index}-")))


def train(config: TrainConfig, out: Path, overwrite: bool = False, verbose: bool = True) -> TrainResult:
    started = time.perf_counter()
    role = worker_role(os.environ.get("TF_CONFIG"))
    spec = check_config(config)
    run = RunDir(Path(out))
    if role.chief:
        check_output(run, overwrite)
    with step("listing images"):
        dataset = read_dataset(config.data_dir, config.layout, config.layout_options)
    config = replace(config, layout=dataset.layout)
    run = work_run(run, role)
    existed = run.path.exists()
    cache = choose_cache(config.cache, dataset, config.image_size)
    log.info("decoded images kept in %s (--cache %s)", cache, config.cache)
    shutil.rmtree(run.cache_dir, ignore_errors=True)  # left by a run that was killed
    try:
        decoded = stream_all(dataset, config.image_size, cache, run.cache_dir, role)
        run.path.mkdir(parents=True, exist_ok=True)
        if overwrite and role.chief:
            clear_previous(run)
        if role.chief:
            split = dataset.split or write_array_files(dataset, run.array_data_dir, config.seed)
            metadata = ModelMetadata(
                labels=dataset.class_names,
                input_size=(config.image_size, config.image_size),
                normalization=spec.normalization,
                backbone=spec.name,
            )
            # Everything a resume needs is written before the first epoch.
            atomic_write(run.config, config.to_json())
            atomic_write(run.labels, "\n".join(dataset.class_names) + "\n")
            atomic_write(run.preprocessing, metadata.to_json())
            atomic_write(run.split, split.to_json())
        return run_training(config, spec, run, dataset, decoded, None, verbose, started, cache, role)
    finally:
        shutil.rmtree(run.cache_dir, ignore_errors=True)
        if not role.chief:
            shutil.rmtree(run.path, ignore_errors=True)
        elif not existed and run.path.is_dir() and not any(run.path.iterdir()):
            run.path.rmdir()  # the data failed its checks before anything of the run was written


def resume(path: Path, verbose: bool = True) -> TrainResult:
    """Continue an interrupted run from its last completed epoch, with the data, split and flags it recorded."""
    started = time.perf_counter()
    run = RunDir(Path(path))
    if worker_role(os.environ.get("TF_CONFIG")).count > 1:
        raise EdgetlError(
            f"{run.path}: --resume runs on one machine (the other workers' state is not kept); unset TF_CONFIG"
        )
    if not run.path.is_dir():
        raise EdgetlError(f"{run.path}: no such run directory to resume")
    if run.model.exists():
        raise EdgetlError(f"{run.path}: finished already (model.keras exists); nothing to resume")
    refuse_links(run.path, *run_paths(run))
    state = read_state(run)
    if state is None or not run.config.is_file():
        raise EdgetlError(
            f"{run.path}: no checkpoint to resume (no epoch finished); start again with "
            f"`edgetl train DATA --out {run.path} --overwrite`"
        )
    config = run.read_config()
    spec = check_config(config)
    if config.layout in ARRAY_LAYOUTS:
        dataset = read_dataset(config.data_dir, config.layout, config.layout_options)
    else:
        split = run.read_split()
        dataset = Dataset(config.layout, config.data_dir, split.class_names, split=split)
    log.info("resuming %s at stage %d after epoch %d", run.path, state.stage, state.epoch)
    cache = choose_cache(config.cache, dataset, config.image_size)
    shutil.rmtree(run.cache_dir, ignore_errors=True)  # left by the interrupted run
    try:
        decoded = stream_all(dataset, config.image_size, cache, run.cache_dir, WorkerRole())
        return run_training(config, spec, run, dataset, decoded, state, verbose, started, cache, WorkerRole())
    finally:
        shutil.rmtree(run.cache_dir, ignore_errors=True)


def balanced_class_weight(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """scikit-learn's 'balanced': n_samples / (n_classes * count), so every class weighs the same in the loss."""
    counts = np.bincount(labels, minlength=num_classes)
    return {label: float(len(labels) / (num_classes * count)) for label, count in enumerate(counts) if count}


def run_training(
    config: TrainConfig,
    spec: BackboneSpec,
    run: RunDir,
    dataset: Dataset,
    decoded: dict[str, Subset],
    state: CheckpointState | None,
    verbose: bool,
    started: float,
    cache: str,
    role: WorkerRole,
) -> TrainResult:
    import_tensorflow_quietly()
    import keras

    from edgetl.training.augment import build_augmenter
    from edgetl.training.stages import StagePlan, fit_stage1, fit_stage2
    from edgetl.training.strategy import set_up_devices

    # The strategy first: MultiWorkerMirroredStrategy must be made before TensorFlow runs anything else.
    devices = set_up_devices()
    keras.utils.set_random_seed(config.seed)
    if role.count > 1:
        log.info(
            "worker %d of %d: training on its shard of %d training and %d validation images; writing to %s",
            role.index,
            role.count,
            len(decoded["train"].labels),
            len(decoded["validation"].labels),
            run.path,
        )

    def build(weights: str):
        return build_classifier(
            spec,
            num_classes=len(dataset.class_names),
            image_size=config.image_size,
            alpha=config.alpha,
            weights=weights,
            head=HeadConfig(config.dropout, config.hidden_units),
        )

    with devices.strategy.scope():
        model = build(config.weights)
    if state is not None:
        load_checkpoint(run, model, state)
    history = state.history if state is not None else {"stage1": {}, "stage2": {}}
    stage, epoch = (state.stage, state.epoch) if state is not None else (1, 0)
    plan = StagePlan(
        config=config,
        run=run,
        model=model,
        decoded=decoded,
        history=history,
        class_weight=(
            balanced_class_weight(decoded["train"].labels, len(dataset.class_names))
            if config.class_weight == "balanced"
            else None
        ),
        augmenter=build_augmenter(config.augmentation, config.seed) if config.augment else None,
        jit_compile=devices.plan.jit_compile,
        verbose=verbose,
        resumed=state,
        cache_folder=run.cache_dir,
    )
    feature_cache = False
    stage_seconds: dict[str, float] = {}
    try:
        if stage == 1:
            began = time.perf_counter()
            feature_cache = fit_stage1(plan, initial_epoch=epoch)
            stage_seconds["stage1"] = time.perf_counter() - began
            stage, epoch = (2 if config.fine_tune_epochs else TRAINING_DONE), 0
            save_checkpoint(run, model, stage, epoch, history)
        if stage == 2:
            began = time.perf_counter()
            fit_stage2(plan, initial_epoch=epoch)
            stage_seconds["stage2"] = time.perf_counter() - began
            save_checkpoint(run, model, TRAINING_DONE, 0, history)
    except KeyboardInterrupt:
        saved = read_state(run)
        if saved is None:
            raise TrainingInterrupted(
                f"{run.path}: training interrupted before the first epoch ended; nothing to resume, "
                f"start again with --overwrite"
            ) from None
        raise TrainingInterrupted(
            f"{run.path}: training interrupted; stage {saved.stage} epoch {saved.epoch} is saved: "
            f"continue with `edgetl train --resume {run.path}`"
        ) from None
    if not role.chief:
        counts = {name: len(subset.labels) for name, subset in decoded.items()}
        epochs = {stage: len(rows.get("loss", [])) for stage, rows in history.items()}
        log.info("worker %d of %d: finished %s epochs; the chief writes the run", role.index, role.count, epochs)
        skipped = sum(len(subset.skipped) for subset in decoded.values())
        return TrainResult(
            run, dataset.class_names, dataset.layout, float("nan"), counts, skipped, epochs, feature_cache,
            time.perf_counter() - started, stage_seconds, cache, role,
        )  # fmt: skip
    if devices.plan.mixed_precision or role.count > 1:
        # Several workers: the chief evaluates and saves a copy outside the strategy, so that nothing it does
        # now waits for the others' collective operations.
        model = float32_copy(model, build)
    return finish_run(config, run, model, dataset, decoded, history, feature_cache, stage_seconds, started, cache)


def float32_copy(model, build):
    """The trained model with float32 layers. Mixed float16 speeds training up on GPUs, but the TFLite converter
    cannot translate its casts, and CPUs and devices want float32; its variables are float32 already."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    copy = build("none")  # the architecture only: the weights come from the trained model
    copy.set_weights(model.get_weights())
    return copy


def finish_run(
    config: TrainConfig,
    run: RunDir,
    model,
    dataset: Dataset,
    decoded: dict[str, Subset],
    history: dict,
    feature_cache: bool,
    stage_seconds: dict[str, float],
    started: float,
    cache: str = "memory",
) -> TrainResult:
    from edgetl.training.reports import write_reports

    test = decoded["test"]
    probabilities = np.asarray(model.predict(to_dataset(test, config.batch_size), verbose=0), dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    test_accuracy = float(np.mean(predicted == test.labels))
    picked = probabilities[np.arange(len(test.labels)), test.labels]
    test_loss = float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))
    files = [str(example.path) for example in test.examples]
    report = write_reports(run.report_dir, test.read, test.labels, probabilities, dataset.class_names, history, files)
    counts = {name: len(subset.labels) for name, subset in decoded.items()}
    skipped = [str(error) for subset in decoded.values() for error in subset.skipped]
    epochs = {stage: len(rows.get("loss", [])) for stage, rows in history.items()}
    atomic_write(run.history, json.dumps(history, indent=1))
    atomic_write(
        run.metrics,
        json.dumps(
            {
                "test_accuracy": test_accuracy,
                "test_loss": test_loss,
                "macro_f1": report.macro_f1,
                "weighted_f1": report.weighted_f1,
                "layout": dataset.layout,
                "images": counts,
                "epochs": epochs,
                "feature_cache": feature_cache,
                "cache": cache,
                "stage_seconds": stage_seconds,
                "skipped_count": len(skipped),
                "skipped": skipped,
            },
            indent=1,
        ),
    )
    # The model goes last: a run with model.keras is a finished run.
    staging = temporary_sibling(run.model)
    try:
        model.save(staging)
        os.replace(staging, run.model)
    finally:
        staging.unlink(missing_ok=True)
    shutil.rmtree(run.checkpoint_dir, ignore_errors=True)
    return TrainResult(
        run=run,
        class_names=dataset.class_names,
        layout=dataset.layout,
        test_accuracy=test_accuracy,
        counts=counts,
        skipped=len(skipped),
        epochs=epochs,
        feature_cache=feature_cache,
        seconds=time.perf_counter() - started,
        stage_seconds=stage_seconds,
        cache=cache,
    )
