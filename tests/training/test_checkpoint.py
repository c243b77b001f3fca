"""Per-epoch checkpoints: what is saved while the backbone is frozen and after, and that loading restores it."""

import numpy as np
import pytest

from edgetl.models.backbones import get_backbone
from edgetl.models.classifier import HeadConfig, build_backbone, build_classifier
from edgetl.run import RunDir
from edgetl.training.checkpoint import changeable_weights, load_checkpoint, read_state, save_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("w") / "b.weights.h5"
    build_backbone(get_backbone("mobilenetv2"), 32, 0.35, "none").save_weights(path)
    return str(path)


def classifier(weights: str):
    return build_classifier(get_backbone("mobilenetv2"), 3, 32, 0.35, weights, HeadConfig(hidden_units=4))


def compiled_classifier():
    """A from-scratch classifier compiled with its optimizer built, as stages._build_training_state leaves it."""
    import keras

    model = classifier("none")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    return model


def scramble(variables, rng) -> None:
    for variable in variables:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))


def assert_same_values(expected, actual) -> None:
    """Two lists of weights (variables or arrays), value for value."""
    for before, after in zip(expected, actual, strict=True):
        message = getattr(after, "path", "")
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after), err_msg=message)


def saved_arrays(run: RunDir) -> dict[str, np.ndarray]:
    with np.load(run.checkpoint_dir / read_state(run).weights) as arrays:
        return {key: arrays[key] for key in arrays.files}


def test_frozen_backbone_checkpoints_only_the_rest_and_resume_restores_it(weights_file, tmp_path):
    rng = np.random.default_rng(1)
    run = RunDir(tmp_path / "run")
    trained = classifier(weights_file)
    for name in ("hidden", "probabilities"):
        for variable in trained.get_layer(name).weights:
            variable.assign(rng.normal(size=variable.shape).astype("float32"))
    save_checkpoint(run, trained, 1, 3, {"stage1": {"loss": [1.0, 0.9, 0.8]}})

    arrays = saved_arrays(run)
    backbone_count = len(trained.get_layer("backbone").weights)
    assert len(arrays) == len(trained.weights) - backbone_count and backbone_count > 100

    resumed = classifier(weights_file)  # the backbone comes back from the same weights file
    load_checkpoint(run, resumed, read_state(run))
    assert_same_values(trained.weights, resumed.weights)


def test_trainable_backbone_checkpoints_everything(tmp_path):
    rng = np.random.default_rng(2)
    run = RunDir(tmp_path / "run")
    trained = classifier("none")
    assert trained.get_layer("backbone").trainable
    scramble(trained.weights, rng)
    save_checkpoint(run, trained, 1, 1, {})
    assert len(saved_arrays(run)) == len(trained.weights)

    resumed = classifier("none")
    load_checkpoint(run, resumed, read_state(run))
    assert_same_values(trained.weights, resumed.weights)


def test_a_checkpoint_that_does_not_fit_the_model_is_a_clear_error(tmp_path):
    from edgetl.errors import ModelFileError

    run = RunDir(tmp_path / "run")
    save_checkpoint(run, classifier("none"), 1, 1, {})
    other = build_classifier(get_backbone("mobilenetv2"), 5, 32, 0.35, "none", HeadConfig())
    with pytest.raises(ModelFileError, match="checkpoint is damaged"):
        load_checkpoint(run, other, read_state(run))


def test_a_resumed_stage_gets_back_its_optimizer_counters_and_best_weights(tmp_path):
    from edgetl.config import TrainConfig
    from edgetl.training.callbacks import EARLY_STOPPING, REDUCE_LR, stage_callbacks
    from edgetl.training.checkpoint import load_optimizer

    rng = np.random.default_rng(3)
    run = RunDir(tmp_path / "run")
    config = TrainConfig(data_dir="unused", patience=4)

    # The interrupted process: epoch 2 was the best, epoch 4 the last one finished.
    interrupted = compiled_classifier()
    scramble(interrupted.weights, rng)
    save_checkpoint(run, interrupted, 1, 2, {}, optimizer=interrupted.optimizer, best=True)
    best = [np.asarray(v).copy() for v in interrupted.weights]
    scramble(interrupted.weights, rng)
    for variable in interrupted.optimizer.variables:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    counters = {
        EARLY_STOPPING: {"best": 0.25, "wait": 2.0, "best_epoch": 1.0},
        REDUCE_LR: {"best": 0.25, "wait": 1.0, "cooldown_counter": 0.0},
    }
    save_checkpoint(run, interrupted, 1, 4, {}, optimizer=interrupted.optimizer, callbacks=counters)
    state = read_state(run)
    assert state.best_weights == "stage1-epoch0002.npz" and state.weights == "stage1-epoch0004.npz"
    assert sorted(p.name for p in run.checkpoint_dir.glob("*.npz")) == [state.best_weights, state.weights]

    # The resuming process: a fresh model given the last epoch's weights, as `edgetl train --resume` does.
    resumed = compiled_classifier()
    load_checkpoint(run, resumed, state)
    load_optimizer(run, resumed, state)
    assert_same_values(interrupted.optimizer.variables, resumed.optimizer.variables)
    early_stopping, reduce_lr, _ = stage_callbacks(config, run, resumed, resumed, 1, {}, state, verbose=False)
    for callback in (early_stopping, reduce_lr):
        callback.set_model(resumed)
        callback.on_train_begin()
    assert (early_stopping.best, early_stopping.wait, early_stopping.best_epoch) == (0.25, 2, 1)
    assert (reduce_lr.best, reduce_lr.wait, reduce_lr.cooldown_counter) == (0.25, 1, 0)
    assert_same_values(best, early_stopping.best_weights)
    assert_same_values(interrupted.weights, resumed.weights)  # the model itself is still at the last epoch


@pytest.mark.parametrize(("epoch", "wait"), [(4, 2), (10, 0)], ids=["out-of-patience", "all-epochs-run"])
def test_a_stage_that_had_stopped_is_not_trained_again_and_ends_on_its_best_epoch(weights_file, tmp_path, epoch, wait):
    """Interrupted after the stage's last epoch was saved but before the stage's end was: early stopping had run
    out of patience (2) at epoch 4, or all 10 epochs had run. Resuming restores the best epoch (2) and goes on."""
    from edgetl.config import TrainConfig
    from edgetl.training.callbacks import EARLY_STOPPING
    from edgetl.training.stages import StagePlan, fit_stage1

    rng = np.random.default_rng(4)
    run = RunDir(tmp_path / "run")
    interrupted = classifier(weights_file)  # the backbone is frozen: training changes the rest
    head_weights = list(changeable_weights(interrupted).values())
    scramble(head_weights, rng)
    save_checkpoint(run, interrupted, 1, 2, {}, best=True)
    best = [np.asarray(v).copy() for v in interrupted.weights]
    scramble(head_weights, rng)
    counters = {EARLY_STOPPING: {"best": 0.5, "wait": float(wait), "best_epoch": 1.0}}
    save_checkpoint(run, interrupted, 1, epoch, {}, callbacks=counters)

    resumed = classifier(weights_file)
    state = read_state(run)
    load_checkpoint(run, resumed, state)
    config = TrainConfig(data_dir="unused", weights=weights_file, epochs=10, patience=2)
    # No data at all: training again would fail on the missing subsets.
    plan = StagePlan(config, run, resumed, {}, {}, None, None, jit_compile=False, verbose=False, resumed=state)
    assert fit_stage1(plan, initial_epoch=state.epoch) is True
    assert_same_values(best, resumed.weights)


def test_a_mixed_precision_optimizer_gets_back_its_loss_scale(tmp_path):
    """On one GPU the optimizer is Keras' LossScaleOptimizer, already built when the resumed stage loads it."""
    import keras

    from edgetl.training.checkpoint import load_optimizer

    run = RunDir(tmp_path / "run")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        interrupted = compiled_classifier()
        assert isinstance(interrupted.optimizer, keras.optimizers.LossScaleOptimizer)
        for index, variable in enumerate(interrupted.optimizer.variables):
            variable.assign(np.full(variable.shape, index + 2).astype(variable.dtype))
        save_checkpoint(run, interrupted, 1, 3, {}, optimizer=interrupted.optimizer)
        resumed = compiled_classifier()
        count = len(resumed.optimizer.variables)
        load_optimizer(run, resumed, read_state(run))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert len(resumed.optimizer.variables) == count
    assert_same_values(interrupted.optimizer.variables, resumed.optimizer.variables)
    assert float(resumed.optimizer.dynamic_scale) == float(interrupted.optimizer.dynamic_scale) != 2.0**15
