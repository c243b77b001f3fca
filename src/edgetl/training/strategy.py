"""Where training runs: the distribution strategy, mixed precision and XLA, chosen from the visible devices.

Several GPUs on one machine: MirroredStrategy. TF_CONFIG set (several machines): MultiWorkerMirroredStrategy.
Otherwise the default strategy. Mixed float16 and XLA only on GPUs, where they pay; on a CPU they cost accuracy
or compile time for nothing. The output layer is float32 in every model (see models/classifier.py).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from edgetl.errors import EdgetlError

log = logging.getLogger(__name__)

# Strategy kind -> attribute of tf.distribute (None: the default strategy).
STRATEGIES = {"default": None, "mirrored": "MirroredStrategy", "multi_worker": "MultiWorkerMirroredStrategy"}


@dataclass(frozen=True)
class DevicePlan:
    strategy: str  # a key of STRATEGIES
    gpus: int
    mixed_precision: bool
    jit_compile: bool


def plan_devices(gpus: int, tf_config: str | None) -> DevicePlan:
    if tf_config:
        strategy = "multi_worker"
    elif gpus > 1:
        strategy = "mirrored"
    else:
        strategy = "default"
    on_gpu = gpus > 0
    return DevicePlan(strategy=strategy, gpus=gpus, mixed_precision=on_gpu, jit_compile=on_gpu)


@dataclass(frozen=True)
class WorkerRole:
    """This process's place among the machines training one model (TF_CONFIG), or the only one.

    The chief (index 0: the "chief" task, else worker 0) alone writes the run; every worker reads only its shard
    of the images, the ones at index, index + count, ...
    """

    index: int = 0
    count: int = 1

    @property
    def chief(self) -> bool:
        return self.index == 0


def worker_role(tf_config: str | None) -> WorkerRole:
    """Read this process's role from TF_CONFIG's cluster ("chief" and "worker" tasks) and task."""
    if not tf_config:
        return WorkerRole()
    try:
        config = json.loads(tf_config)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, index = task["type"], int(task["index"])
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise EdgetlError(
            f"TF_CONFIG {tf_config!r}: not a cluster and task as MultiWorkerMirroredStrategy reads them "
            f"({type(error).__name__}: {error}); see the train page of the docs, under Several machines"
        ) from None
    if kind not in ("chief", "worker") or not 0 <= index < len(chiefs if kind == "chief" else workers):
        raise EdgetlError(
            f"TF_CONFIG: task {kind} {index} is not in the cluster's chief or worker tasks "
            f"({len(chiefs)} chief, {len(workers)} worker); edgetl train runs as a chief or a worker"
        )
    return WorkerRole(index if kind == "chief" else len(chiefs) + index, len(chiefs) + len(workers))


@dataclass
class DeviceSetup:
    plan: DevicePlan
    strategy: object  # a tf.distribute.Strategy


def set_up_devices() -> DeviceSetup:
    """Look at the GPUs and TF_CONFIG, set the precision policy, and make the strategy to build the model in."""
    import keras
    import tensorflow as tf

    from edgetl.runtime.quiet import native_stderr_captured

    # Under TF_CONFIG the CUDA platform first starts here (tfquiet.py leaves the context to the strategy), and
    # on a machine without a GPU it complains through absl, past every log level: expected, so not shown.
    with native_stderr_captured():
        gpus = len(tf.config.list_physical_devices("GPU"))
    plan = plan_devices(gpus, os.environ.get("TF_CONFIG"))
    keras.mixed_precision.set_global_policy("mixed_float16" if plan.mixed_precision else "float32")
    constructor = STRATEGIES[plan.strategy]
    strategy = tf.distribute.get_strategy() if constructor is None else getattr(tf.distribute, constructor)()
    log.info(
        "devices: %d GPU(s), %s strategy, mixed precision %s, XLA %s",
        plan.gpus,
        plan.strategy,
        "on" if plan.mixed_precision else "off",
        "on" if plan.jit_compile else "off",
    )
    return DeviceSetup(plan, strategy)
