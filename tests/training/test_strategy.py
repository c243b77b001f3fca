"""The device set-up chosen from the GPUs and TF_CONFIG (no GPU here: the device list is faked)."""

import pytest

from edgetl.errors import EdgetlError
from edgetl.training import strategy
from edgetl.training.strategy import plan_devices, worker_role


@pytest.mark.parametrize(
    ("gpus", "tf_config", "strategy", "on_gpu"),
    [
        (0, None, "default", False),
        (1, None, "default", True),
        (4, None, "mirrored", True),
        (0, '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}', "multi_worker", False),
        (2, '{"cluster": {}}', "multi_worker", True),
    ],
)
def test_plan(gpus, tf_config, strategy, on_gpu):
    plan = plan_devices(gpus, tf_config)
    assert plan.strategy == strategy
    assert plan.mixed_precision is on_gpu and plan.jit_compile is on_gpu


def test_set_up_two_gpus_mirrors_in_mixed_precision(monkeypatch):
    import keras
    import tensorflow as tf

    made = []

    class FakeMirrored:
        def __init__(self):
            made.append(self)

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0", "GPU:1"])
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", FakeMirrored)
    try:
        setup = strategy.set_up_devices()
        assert setup.plan.strategy == "mirrored" and setup.strategy is made[0]
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_set_up_cpu_keeps_float32_and_the_default_strategy(monkeypatch):
    import keras
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    setup = strategy.set_up_devices()
    assert setup.plan.strategy == "default" and setup.strategy is tf.distribute.get_strategy()
    assert keras.mixed_precision.global_policy().name == "float32"
    assert not setup.plan.jit_compile


@pytest.mark.parametrize(
    ("tf_config", "index", "count"),
    [
        (None, 0, 1),
        ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}', 1, 2),
        ('{"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}}', 0, 3),
        ('{"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}', 1, 3),
    ],
)
def test_worker_role_from_tf_config(tf_config, index, count):
    role = worker_role(tf_config)
    assert (role.index, role.count, role.chief) == (index, count, index == 0)


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        ("{not json", "not a cluster and task"),
        ('{"cluster": {"worker": ["a:1"]}}', "not a cluster and task"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "task worker 1 is not in"),
        ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "runs as a chief or a worker"),
    ],
)
def test_a_bad_tf_config_is_a_one_line_error(tf_config, message):
    with pytest.raises(EdgetlError, match=message):
        worker_role(tf_config)
