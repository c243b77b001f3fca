"""`edgetl train`: split, decode, build, fit with early stopping, evaluate, and write the run."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from edgetl.config import TrainConfig
from edgetl.data.folder import read_class_folders
from edgetl.data.pipeline import decode_subset, to_dataset
from edgetl.data.split import SUBSETS, stratified_split
from edgetl.errors import DataError, EdgetlError
from edgetl.models.backbones import get_backbone
from edgetl.models.classifier import HeadConfig, build_classifier
from edgetl.run import RunDir, atomic_write, temporary_sibling
from edgetl.runtime.metadata import ModelMetadata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run: RunDir
    class_names: list[str]
    test_accuracy: float
    counts: dict[str, int]
    skipped: int
    epochs_run: int
    seconds: float


def check_output(run: RunDir, overwrite: bool) -> None:
    if run.model.exists() and not overwrite:
        raise EdgetlError(f"{run.path}: already holds a trained model; choose a new --out or pass --overwrite")
    if run.path.exists() and not run.path.is_dir():
        raise EdgetlError(f"{run.path}: exists and is not a folder")


def train(config: TrainConfig, out: Path, overwrite: bool = False, verbose: bool = True) -> TrainResult:
    started = time.perf_counter()
    spec = get_backbone(config.backbone)
    spec.check(config.image_size, config.alpha)
    run = RunDir(Path(out))
    check_output(run, overwrite)

    images = read_class_folders(Path(config.data_dir))
    split = stratified_split(images, config.validation_fraction, config.test_fraction, config.seed)
    decoded = {name: decode_subset(split.subset(name), config.image_size) for name in SUBSETS}
    for name, subset in decoded.items():
        if len(subset.labels) == 0:
            raise DataError(f"{images.root}: no {name} image could be decoded")
    skipped = sum(len(subset.skipped) for subset in decoded.values())

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(config.seed)
    model = build_classifier(
        spec,
        num_classes=len(split.class_names),
        image_size=config.image_size,
        alpha=config.alpha,
        weights=config.weights,
        head=HeadConfig(config.dropout, config.hidden_units),
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    train_data = to_dataset(decoded["train"], config.batch_size, shuffle_seed=config.seed)
    validation_data = to_dataset(decoded["validation"], config.batch_size)
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.patience, restore_best_weights=True, verbose=int(verbose)
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.3, patience=max(1, config.patience // 2), verbose=int(verbose)
        ),
    ]
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=2 if verbose else 0,
    )
    test_loss, test_accuracy = model.evaluate(to_dataset(decoded["test"], config.batch_size), verbose=0)

    metadata = ModelMetadata(
        labels=split.class_names,
        input_size=(config.image_size, config.image_size),
        normalization=spec.normalization,
        backbone=spec.name,
    )
    counts = {name: len(subset.labels) for name, subset in decoded.items()}
    run.path.mkdir(parents=True, exist_ok=True)
    atomic_write(run.config, config.to_json())
    atomic_write(run.labels, "\n".join(split.class_names) + "\n")
    atomic_write(run.preprocessing, metadata.to_json())
    atomic_write(run.split, split.to_json())
    history_rows = {key: [float(v) for v in values] for key, values in history.history.items()}
    atomic_write(run.history, json.dumps({"stage1": history_rows}, indent=1))
    atomic_write(
        run.metrics,
        json.dumps(
            {
                "test_accuracy": float(test_accuracy),
                "test_loss": float(test_loss),
                "images": counts,
                "skipped": [str(error) for subset in decoded.values() for error in subset.skipped],
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
    return TrainResult(
        run=run,
        class_names=split.class_names,
        test_accuracy=float(test_accuracy),
        counts=counts,
        skipped=skipped,
        epochs_run=len(history.history.get("loss", [])),
        seconds=time.perf_counter() - started,
    )
