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
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgetl.config import CLASS_WEIGHTS, TrainConfig
from edgetl.data.dataset import Dataset, decode_dataset_subset, write_array_files
from edgetl.data.layouts import ARRAY_LAYOUTS, LayoutOptions, read_dataset
from edgetl.data.pipeline import DecodedSubset, to_dataset
from edgetl.data.split import SUBSETS
from edgetl.errors import DataError, EdgetlError, MissingExtraError, TrainingInterrupted
from edgetl.files import atomic_write, temporary_sibling
from edgetl.models.backbones import BackboneSpec, get_backbone
from edgetl.models.classifier import HeadConfig, build_classifier
from edgetl.run import RunDir
from edgetl.runtime.metadata import ModelMetadata
from edgetl.tfquiet import import_tensorflow_quietly
from edgetl.train.augment import AugmentConfig
from edgetl.train.checkpoint import (
    TRAINING_DONE,
    CheckpointState,
    checkpoint_dir,
    load_checkpoint,
    read_state,
    save_checkpoint,
)

log = logging.getLogger(__name__)

REPORT_DIR = "report"
ARRAY_DATA_DIR = "data"


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

    @property
    def epochs_run(self) -> int:
        return sum(self.epochs.values())


def layout_options(config: TrainConfig) -> LayoutOptions:
    return LayoutOptions(
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
        id_column=config.id_column,
        label_column=config.label_column,
        images=config.images,
    )


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
    if run.path.exists() and not run.path.is_dir():
        raise EdgetlError(f"{run.path}: exists and is not a folder")
    if overwrite:
        return
    if run.model.exists():
        raise EdgetlError(f"{run.path}: already holds a trained model; choose a new --out or pass --overwrite")
    if (checkpoint_dir(run) / "state.json").exists():
        raise EdgetlError(
            f"{run.path}: holds an interrupted run; continue it with `edgetl train --resume {run.path}` "
            f"or pass --overwrite"
        )


def clear_previous(run: RunDir) -> None:
    """--overwrite: the old model goes first, so the folder never pairs it with the new run's files; then what was
    made from it (exports, whose index goes before the files it lists; figures), which would describe another model."""
    run.model.unlink(missing_ok=True)
    for stale in (run.exports_index, run.metrics, run.history):
        stale.unlink(missing_ok=True)
    for folder in (checkpoint_dir(run), run.exports_dir, run.path / REPORT_DIR, run.path / ARRAY_DATA_DIR):
        if folder.is_dir():
            shutil.rmtree(folder)


def decode_all(dataset: Dataset, image_size: int) -> dict[str, DecodedSubset]:
    decoded = {name: decode_dataset_subset(dataset, name, image_size) for name in SUBSETS}
    for name, subset in decoded.items():
        if len(subset.labels) == 0:
            raise DataError(f"{dataset.source}: no {name} image could be decoded")
    return decoded


def train(config: TrainConfig, out: Path, overwrite: bool = False, verbose: bool = True) -> TrainResult:
    started = time.perf_counter()
    spec = check_config(config)
    run = RunDir(Path(out))
    check_output(run, overwrite)
    dataset = read_dataset(config.data_dir, config.layout, layout_options(config))
    config = replace(config, layout=dataset.layout)
    decoded = decode_all(dataset, config.image_size)

    run.path.mkdir(parents=True, exist_ok=True)
    if overwrite:
        clear_previous(run)
    split = dataset.split or write_array_files(dataset, run.path / ARRAY_DATA_DIR, config.seed)
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
    return run_training(config, spec, run, dataset, decoded, None, verbose, started)


def resume(path: Path, verbose: bool = True) -> TrainResult:
    """Continue an interrupted run from its last completed epoch, with the data, split and flags it recorded."""
    started = time.perf_counter()
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise EdgetlError(f"{run.path}: no such run directory to resume")
    if run.model.exists():
        raise EdgetlError(f"{run.path}: finished already (model.keras exists); nothing to resume")
    state = read_state(run)
    if state is None or not run.config.is_file():
        raise EdgetlError(
            f"{run.path}: no checkpoint to resume (no epoch finished); start again with "
            f"`edgetl train DATA --out {run.path} --overwrite`"
        )
    config = run.read_config()
    spec = check_config(config)
    if config.layout in ARRAY_LAYOUTS:
        dataset = read_dataset(config.data_dir, config.layout, layout_options(config))
    else:
        split = run.read_split()
        dataset = Dataset(config.layout, config.data_dir, split.class_names, split=split)
    log.info("resuming %s at stage %d after epoch %d", run.path, state.stage, state.epoch)
    return run_training(config, spec, run, dataset, decode_all(dataset, config.image_size), state, verbose, started)


def balanced_class_weight(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """scikit-learn's 'balanced': n_samples / (n_classes * count), so every class weighs the same in the loss."""
    counts = np.bincount(labels, minlength=num_classes)
    return {label: float(len(labels) / (num_classes * count)) for label, count in enumerate(counts) if count}


def run_training(
    config: TrainConfig,
    spec: BackboneSpec,
    run: RunDir,
    dataset: Dataset,
    decoded: dict[str, DecodedSubset],
    state: CheckpointState | None,
    verbose: bool,
    started: float,
) -> TrainResult:
    import_tensorflow_quietly()
    import keras

    from edgetl.train.augment import build_augmenter
    from edgetl.train.device import set_up_devices
    from edgetl.train.stages import StagePlan, fit_stage1, fit_stage2

    keras.utils.set_random_seed(config.seed)
    devices = set_up_devices()

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
    augment = AugmentConfig(
        config.flip, config.rotation, config.zoom, config.translation, config.brightness, config.contrast
    )
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
        augmenter=build_augmenter(augment, config.seed) if config.augment else None,
        jit_compile=devices.plan.jit_compile,
        verbose=verbose,
        resumed=state,
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
    if devices.plan.mixed_precision:
        model = float32_copy(model, build)
    return finish_run(config, run, model, dataset, decoded, history, feature_cache, stage_seconds, started)


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
    decoded: dict[str, DecodedSubset],
    history: dict,
    feature_cache: bool,
    stage_seconds: dict[str, float],
    started: float,
) -> TrainResult:
    from edgetl.train.reports import write_reports

    test = decoded["test"]
    probabilities = np.asarray(model.predict(to_dataset(test, config.batch_size), verbose=0), dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    test_accuracy = float(np.mean(predicted == test.labels))
    picked = probabilities[np.arange(len(test.labels)), test.labels]
    test_loss = float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))
    report = write_reports(run.path / REPORT_DIR, test.pixels, test.labels, probabilities, dataset.class_names, history)
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
    shutil.rmtree(checkpoint_dir(run), ignore_errors=True)
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
    )
