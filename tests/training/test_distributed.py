"""The GPU paths without a GPU, through the real `edgetl train` (cached stage 1, then stage 2) and `edgetl export`:
what set_up_devices plans for two GPUs (MirroredStrategy, here over two logical CPU devices, in mixed float16) and
for one (mixed float16 and XLA). Each runs in a fresh process: logical devices can only be made before TensorFlow
starts, and the precision policy is global."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.training.conftest import SIZE

pytestmark = pytest.mark.slow

TRAIN_AS_ON_GPUS = """
import json, sys
import tensorflow as tf

data, weights, out, size, gpus = sys.argv[1:6]
gpus = int(gpus)
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from edgetl.training import strategy

planned = strategy.plan_devices(gpus, None)
# XLA is left out with several replicas: on logical CPUs it cannot reach the other replica's variables.
strategy.plan_devices = lambda found, tf_config: strategy.DevicePlan(
    planned.strategy, gpus, planned.mixed_precision, planned.jit_compile and gpus == 1
)
Mirrored = tf.distribute.MirroredStrategy
tf.distribute.MirroredStrategy = lambda: Mirrored(["/cpu:0", "/cpu:1"])
setups = []
set_up_devices = strategy.set_up_devices
strategy.set_up_devices = lambda: setups.append(set_up_devices()) or setups[-1]

from pathlib import Path
from edgetl.config import TrainConfig
from edgetl.training.fit import train

config = TrainConfig.from_options(data, alpha=0.35, image_size=int(size), weights=weights, epochs=2, batch_size=16,
                     fine_tune_epochs=1, fine_tune_layers=10, seed=1)
result = train(config, Path(out), verbose=False)


def layers(layer):
    yield layer
    for inner in getattr(layer, "layers", []):
        yield from layers(inner)


saved = result.run.load_model()
print(json.dumps({"plan": [planned.strategy, planned.mixed_precision, planned.jit_compile],
                  "replicas": setups[0].strategy.num_replicas_in_sync,
                  "feature_cache": result.feature_cache, "epochs": result.epochs,
                  "saved_policies": sorted({layer.dtype_policy.name for layer in layers(saved)})}))
"""


@pytest.mark.parametrize(("gpus", "plan"), [(2, ["mirrored", True, True]), (1, ["default", True, True])])
def test_gpu_plans_train_and_export_as_float32(digits, backbone_weights, tmp_path, gpus, plan):
    """`gpus` is what the device plan is made for; the strategy then runs `gpus` replicas on the CPU."""
    run = tmp_path / "run"
    script = [sys.executable, "-c", TRAIN_AS_ON_GPUS, str(digits), str(backbone_weights), str(run), str(SIZE)]
    trained = subprocess.run([*script, str(gpus)], capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert summary["plan"] == plan and summary["replicas"] == gpus and summary["feature_cache"] is True
    assert summary["epochs"] == {"stage1": 2, "stage2": 1}
    # The saved model is float32 throughout, so converters and CPUs take it as it is.
    assert summary["saved_policies"] == ["float32"]

    exported = subprocess.run(
        [sys.executable, "-m", "edgetl", "export", str(run), "--formats", "tflite-float32"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr[-3000:]
    (record,) = json.loads((run / "exports.json").read_text())
    assert record["format"] == "tflite-float32" and record["agreement"] == 1.0
