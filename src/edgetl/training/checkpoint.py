"""A checkpoint after every epoch, so `edgetl train --resume RUN` continues where an interrupted run stopped: the
model's weights, the optimizer's state (Adam's moments, its step and learning rate), the counters of early
stopping and reduce-on-plateau, and the weights of the stage's best epoch so far (which early stopping restores at
the end). Only the shuffling and dropout draws differ from a run that was never stopped.

RUN/checkpoint/ holds the last completed epoch in a file named after its stage and epoch (and, when an earlier
epoch was better, that epoch's file too), and state.json pointing at them. The files are written first
(atomically), then state.json: whenever the process dies, state.json names complete files.

While the backbone is frozen (stage 1 on a pretrained backbone) only the weights outside it are saved: the
backbone's cannot change, and a resume rebuilds it from the same --weights source. For Xception that is 0.1 MB
an epoch instead of 80 MB.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from edgetl.errors import ModelFileError
from edgetl.files import atomic_write
from edgetl.models.classifier import BACKBONE_LAYER_NAME
from edgetl.run import RunDir

STATE_FILE = "state.json"
TRAINING_DONE = 3  # the stage after the last one: only evaluation and writing the run remain
MODEL_KEY = "arr_"  # arr_<position in model.weights>
OPTIMIZER_KEY = "optimizer_"  # optimizer_<position in optimizer.variables>


@dataclass
class CheckpointState:
    stage: int  # the stage being trained: 1, 2, or TRAINING_DONE
    epoch: int  # epochs completed in that stage
    weights: str  # file name in checkpoint/
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    best_weights: str | None = None  # the file of the stage's best epoch so far
    callbacks: dict[str, dict] = field(default_factory=dict)  # callback name -> its counters


def read_state(run: RunDir) -> CheckpointState | None:
    path = run.checkpoint_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return CheckpointState(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        message = f"{path}: the checkpoint state is damaged ({error}); start again with --overwrite"
        raise ModelFileError(message) from None


def _assign(run: RunDir, name: str, prefix: str, variables: list) -> None:
    path = run.checkpoint_dir / name
    try:
        with np.load(path, allow_pickle=False) as arrays:
            for key in arrays.files:
                if key.startswith(prefix):
                    variables[int(key.removeprefix(prefix))].assign(arrays[key])
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise ModelFileError(f"{path}: the checkpoint is damaged ({error}); start again with --overwrite") from None


def load_checkpoint(run: RunDir, model, state: CheckpointState, name: str | None = None) -> None:
    """Put the weights of checkpoint file `name` (default: the last epoch's) into `model`."""
    _assign(run, name or state.weights, MODEL_KEY, model.weights)


def load_optimizer(run: RunDir, fitted, state: CheckpointState) -> None:
    """Give the compiled model's optimizer the state it had at the end of the checkpointed epoch."""
    # Only if not built already: the mixed-precision LossScaleOptimizer would make a second loss scale, and the
    # train step would use that one, not the one restored here.
    if not fitted.optimizer.built:
        fitted.optimizer.build(fitted.trainable_variables)
    _assign(run, state.weights, OPTIMIZER_KEY, fitted.optimizer.variables)


def changeable_weights(model) -> dict[int, object]:
    """The model's weights that training can change, by position in `model.weights`: all of them, or all but a
    frozen backbone's."""
    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    frozen = set() if backbone.trainable else {id(variable) for variable in backbone.weights}
    return {index: variable for index, variable in enumerate(model.weights) if id(variable) not in frozen}


def save_checkpoint(
    run: RunDir,
    model,
    stage: int,
    epoch: int,
    history: dict,
    optimizer=None,
    callbacks: dict[str, dict] | None = None,
    best: bool = False,
) -> CheckpointState:
    """Save the end of `epoch`; `best` says it is the stage's best epoch so far (else the earlier best stays)."""
    folder = run.checkpoint_dir
    folder.mkdir(parents=True, exist_ok=True)
    name = f"stage{stage}-epoch{epoch:04d}.npz"
    previous = read_state(run)
    kept_best = previous.best_weights if previous is not None and previous.stage == stage else None
    state = CheckpointState(stage, epoch, name, history, name if best else kept_best, callbacks or {})
    arrays = {f"{MODEL_KEY}{index}": np.asarray(v) for index, v in changeable_weights(model).items()}
    if optimizer is not None:
        arrays |= {f"{OPTIMIZER_KEY}{index}": np.asarray(v) for index, v in enumerate(optimizer.variables)}
    # Arrays keyed by position: ten times faster than Keras' save_weights, which matters per epoch.
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(folder / state.weights, buffer.getvalue())
    atomic_write(folder / STATE_FILE, json.dumps(asdict(state), indent=1))
    for old in folder.glob("stage*.npz"):
        if old.name not in (state.weights, state.best_weights):
            old.unlink(missing_ok=True)
    return state
