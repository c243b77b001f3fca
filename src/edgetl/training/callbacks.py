"""A stage's callbacks: early stopping (the best epoch's weights restored), reduce-on-plateau, and the checkpoint
after every epoch. A resumed stage gives them back the counters they had when the run was interrupted, and early
stopping the best epoch's weights, so patience and "best" span the interruption."""

from __future__ import annotations

from edgetl.config import TrainConfig
from edgetl.run import RunDir
from edgetl.training.checkpoint import CheckpointState, load_checkpoint, save_checkpoint

EARLY_STOPPING = "early_stopping"
REDUCE_LR = "reduce_lr"
COUNTERS = {EARLY_STOPPING: ("best", "wait", "best_epoch"), REDUCE_LR: ("best", "wait", "cooldown_counter")}
# When the validation loss stops improving, the learning rate is cut to this fraction of itself.
PLATEAU_LEARNING_RATE_FACTOR = 0.3


def plateau_patience(patience: int) -> int:
    """Epochs without improvement before the learning rate is cut: half of early stopping's patience, so the
    lower rate gets its chance before training stops."""
    return max(1, patience // 2)


def counters(callback, name: str) -> dict:
    return {key: None if getattr(callback, key) is None else float(getattr(callback, key)) for key in COUNTERS[name]}


def restore_counters(callback, name: str, saved: dict) -> None:
    for key in COUNTERS[name]:
        if key in saved:
            value = saved[key]
            setattr(callback, key, value if key == "best" or value is None else int(value))


def stage_callbacks(
    config: TrainConfig,
    run: RunDir,
    model,
    fitted,
    stage: int,
    history: dict,
    resumed: CheckpointState | None,
    verbose: bool,
) -> list:
    """The callbacks for fitting `fitted` (the full classifier `model`, or a head made of its layers) in `stage`;
    `resumed` is the checkpoint this stage continues from, if any. `history[f"stage{stage}"]` grows in place."""
    import keras

    class EarlyStopping(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if resumed is None:
                return
            restore_counters(self, EARLY_STOPPING, resumed.callbacks.get(EARLY_STOPPING, {}))
            if resumed.best_weights is not None:
                # The best epoch's weights, as the fitted model sees them; then back to the last epoch's.
                load_checkpoint(run, model, resumed, resumed.best_weights)
                self.best_weights = fitted.get_weights()
                load_checkpoint(run, model, resumed)

    class ReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if resumed is not None:
                restore_counters(self, REDUCE_LR, resumed.callbacks.get(REDUCE_LR, {}))

    early_stopping = EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True, verbose=int(verbose)
    )
    reduce_lr = ReduceLROnPlateau(
        monitor="val_loss",
        factor=PLATEAU_LEARNING_RATE_FACTOR,
        patience=plateau_patience(config.patience),
        verbose=int(verbose),
    )
    key = f"stage{stage}"

    class EpochCheckpoint(keras.callbacks.Callback):
        """Runs after the two above, so their counters include this epoch."""

        def on_epoch_end(self, epoch, logs=None):
            rows = history.setdefault(key, {})
            for name, value in (logs or {}).items():
                rows.setdefault(name, []).append(float(value))
            save_checkpoint(
                run,
                model,
                stage,
                epoch + 1,
                history,
                optimizer=fitted.optimizer,
                callbacks={
                    EARLY_STOPPING: counters(early_stopping, EARLY_STOPPING),
                    REDUCE_LR: counters(reduce_lr, REDUCE_LR),
                },
                best=early_stopping.best_epoch == epoch,
            )

    return [early_stopping, reduce_lr, EpochCheckpoint()]
