"""The two training stages. Each compiles what it trains, has its own early stopping (best weights restored)
and reduce-on-plateau, and checkpoints the full model after every epoch."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from edgetl.config import TrainConfig
from edgetl.data.pipeline import DecodedSubset, StreamedSubset, to_dataset
from edgetl.models.finetune import unfreeze_top
from edgetl.run import RunDir
from edgetl.training.callbacks import EARLY_STOPPING, stage_callbacks
from edgetl.training.checkpoint import CheckpointState, load_checkpoint, load_optimizer
from edgetl.training.features import backbone_features, features_dataset, head_model, is_multi_worker

log = logging.getLogger(__name__)

FINE_TUNE_LEARNING_RATE_FACTOR = 0.1
# A step of the head on cached features is microseconds of arithmetic and a millisecond of Python; running many
# steps per call of the traced function removes most of that. Callbacks here act per epoch, so nothing is lost.
# Keras 3.x cannot run several steps per call under MirroredStrategy (a placeholder of its loop is left unfed), so
# with several replicas the head goes one step per call.
HEAD_STEPS_PER_EXECUTION = 32


@dataclass
class StagePlan:
    config: TrainConfig
    run: RunDir
    model: object  # the full keras.Model
    decoded: dict[str, DecodedSubset | StreamedSubset]  # each worker's own shard of train and validation
    history: dict[str, dict[str, list[float]]]
    class_weight: dict[int, float] | None
    augmenter: object | None  # keras.Sequential of random layers, applied in tf.data
    jit_compile: bool
    verbose: bool
    resumed: CheckpointState | None = None  # the checkpoint an interrupted run continues from
    cache_folder: Path | None = None  # where features too large for memory are spilled


def _compile(model, learning_rate: float, jit_compile: bool, steps_per_execution: int = 1) -> None:
    """Compile in the strategy the model was built in: the optimizer's variables must be mirrored like its own."""
    import keras

    with model.distribute_strategy.scope():
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
        )


def _build_training_state(fitted, train_data) -> None:
    """Create the optimizer's, the loss's and the metrics' variables now, from the data's shapes alone.

    Without a tf.distribute strategy, Keras leaves them to the first trace of its train step; TensorFlow then
    traces that step twice (once to lift the new variables out). Keras does this itself when a strategy is in
    scope; the method is private, so a Keras without it only loses the time.
    """
    symbolic_build = getattr(fitted, "_symbolic_build", None)
    if symbolic_build is not None:
        with fitted.distribute_strategy.scope():
            symbolic_build(data_batch=train_data.element_spec)


@contextlib.contextmanager
def _keras_multi_worker_fixes(fitted):
    """Let Keras 3's fit run under MultiWorkerMirroredStrategy, which it fails on twice (keras-team/keras#20585).

    Before the first step, fit builds the training state from a first batch averaged over the replicas, which
    cannot be done outside a tf.function across workers; `_build_training_state` has built it from the data's
    shapes already, so that build is skipped. And every step averages each replica's scalar logs along an axis 0
    they do not have; they are averaged over the replicas instead, as MirroredStrategy does on one machine.
    Both are undone when the fit ends.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    keras_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean"):
            return keras_reduce(values, strategy, reduction)

        def mean(value):
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.reduce("MEAN", value, axis=None)
            return value

        return tf.nest.map_structure(mean, values)

    trainer.reduce_per_replica = reduce_per_replica
    fitted._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    try:
        yield
    finally:
        trainer.reduce_per_replica = keras_reduce
        del fitted._maybe_symbolic_build


def _fit(plan: StagePlan, fitted, train_data, validation_data, stage: int, initial_epoch: int, epochs: int) -> None:
    """Fit `fitted` (the full model, or the head on cached features); a stage resumed mid-way (initial_epoch > 0)
    gets back its optimizer's state and its callbacks' counters."""
    _build_training_state(fitted, train_data)
    resumed = plan.resumed if initial_epoch > 0 else None
    if resumed is not None:
        load_optimizer(plan.run, fitted, resumed)
    callbacks = stage_callbacks(plan.config, plan.run, plan.model, fitted, stage, plan.history, resumed, plan.verbose)
    multi_worker = is_multi_worker(fitted.distribute_strategy)
    with _keras_multi_worker_fixes(fitted) if multi_worker else contextlib.nullcontext():
        fitted.fit(
            train_data,
            validation_data=validation_data,
            epochs=epochs,
            initial_epoch=initial_epoch,
            class_weight=plan.class_weight,
            shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras would only warn that it cannot
            callbacks=callbacks,
            verbose=2 if plan.verbose else 0,
        )


def _stage_already_over(plan: StagePlan, initial_epoch: int, epochs: int) -> bool:
    """Whether a resumed stage had stopped training (all its epochs run, or early stopping out of patience) before
    the interruption; then all that is left of it is early stopping's restore of the best epoch, done here."""
    resumed = plan.resumed
    if initial_epoch == 0 or resumed is None:
        return False
    waited = resumed.callbacks.get(EARLY_STOPPING, {}).get("wait") or 0
    if initial_epoch < epochs and waited < plan.config.patience:
        return False
    if resumed.best_weights is not None:
        load_checkpoint(plan.run, plan.model, resumed, resumed.best_weights)
    return True


def can_cache_features(plan: StagePlan) -> bool:
    return plan.config.feature_cache and plan.config.weights != "none" and plan.augmenter is None


def fit_stage1(plan: StagePlan, initial_epoch: int = 0) -> bool:
    """Train the head (the whole network with --weights none). Returns whether backbone features were cached."""
    config = plan.config
    if _stage_already_over(plan, initial_epoch, config.epochs):
        return can_cache_features(plan)
    if can_cache_features(plan):
        log.info("stage 1: computing the frozen backbone's features once, then training the head on them")
        train_features, validation_features = backbone_features(
            plan.model, [plan.decoded["train"], plan.decoded["validation"]], config.batch_size, plan.cache_folder
        )
        # In the full model's strategy scope: its variables are mirrored over the replicas, and so the head's.
        strategy = plan.model.distribute_strategy
        steps_per_execution = HEAD_STEPS_PER_EXECUTION if strategy.num_replicas_in_sync == 1 else 1
        with strategy.scope():
            head = head_model(plan.model)
        _compile(head, config.learning_rate, plan.jit_compile, steps_per_execution)
        _fit(
            plan,
            head,
            features_dataset(train_features, plan.decoded["train"].labels, config.batch_size, config.seed),
            features_dataset(validation_features, plan.decoded["validation"].labels, config.batch_size),
            stage=1,
            initial_epoch=initial_epoch,
            epochs=config.epochs,
        )
        return True
    if config.feature_cache and config.weights != "none":  # so --augment is what prevents it
        log.warning("stage 1: augmentation changes every image every epoch, so backbone features cannot be cached")
    _compile(plan.model, config.learning_rate, plan.jit_compile)
    _fit(
        plan,
        plan.model,
        to_dataset(plan.decoded["train"], config.batch_size, shuffle_seed=config.seed, augmenter=plan.augmenter),
        to_dataset(plan.decoded["validation"], config.batch_size),
        stage=1,
        initial_epoch=initial_epoch,
        epochs=config.epochs,
    )
    return False


def fine_tune_learning_rate(config: TrainConfig) -> float:
    if config.fine_tune_learning_rate is not None:
        return config.fine_tune_learning_rate
    return config.learning_rate * FINE_TUNE_LEARNING_RATE_FACTOR


def fit_stage2(plan: StagePlan, initial_epoch: int = 0) -> None:
    """Unfreeze the top of the backbone (BatchNorm stays frozen) and train on, slower."""
    config = plan.config
    if _stage_already_over(plan, initial_epoch, config.fine_tune_epochs):
        return
    unfrozen = unfreeze_top(plan.model, config.fine_tune_layers, config.fine_tune_from)
    learning_rate = fine_tune_learning_rate(config)
    log.info(
        "stage 2: fine-tuning %d backbone layers with weights (from %s) at learning rate %g",
        len(unfrozen),
        unfrozen[0] if unfrozen else "none",
        learning_rate,
    )
    _compile(plan.model, learning_rate, plan.jit_compile)
    _fit(
        plan,
        plan.model,
        to_dataset(plan.decoded["train"], config.batch_size, shuffle_seed=config.seed + 1, augmenter=plan.augmenter),
        to_dataset(plan.decoded["validation"], config.batch_size),
        stage=2,
        initial_epoch=initial_epoch,
        epochs=config.fine_tune_epochs,
    )
