"""The multi-GPU path without GPUs: MirroredStrategy over two logical CPU devices, in mixed float16, through the
real `edgetl train` (cached stage 1, then stage 2) and `edgetl export`. It runs in a fresh process, because
logical devices can only be made before TensorFlow starts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.train.conftest import SIZE

pytestmark = pytest.mark.slow

TRAIN_ON_TWO_REPLICAS = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from edgetl.train import device

strategies = []
Mirrored = tf.distribute.MirroredStrategy


def two_cpus():
    strategies.append(Mirrored(["/cpu:0", "/cpu:1"]))
    return strategies[-1]


# What set_up_devices would plan on a two-GPU machine (XLA left out: on a CPU it only adds compile time).
device.plan_devices = lambda gpus, tf_config: device.DevicePlan("mirrored", 2, mixed_precision=True, jit_compile=False)
tf.distribute.MirroredStrategy = two_cpus

from pathlib import Path
from edgetl.config import TrainConfig
from edgetl.train.fit import train

data, weights, out, size = sys.argv[1:5]
config = TrainConfig(data_dir=data, alpha=0.35, image_size=int(size), weights=weights, epochs=2, batch_size=16,
                     fine_tune_epochs=1, fine_tune_layers=10, seed=1)
result = train(config, Path(out), verbose=False)
print(json.dumps({"replicas": strategies[0].num_replicas_in_sync, "feature_cache": result.feature_cache,
                  "epochs": result.epochs}))
"""


def test_two_replicas_in_mixed_precision_train_and_export_as_float32(digits, backbone_weights, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-c", TRAIN_ON_TWO_REPLICAS, str(digits), str(backbone_weights), str(run), str(SIZE)]
    trained = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert summary == {"replicas": 2, "feature_cache": True, "epochs": {"stage1": 2, "stage2": 1}}

    # The saved model is float32 throughout, so converters and CPUs take it as it is.
    check = (
        "import sys, keras\n"
        "model = keras.saving.load_model(sys.argv[1])\n"
        "def layers(layer):\n"
        "    yield layer\n"
        "    for inner in getattr(layer, 'layers', []):\n"
        "        yield from layers(inner)\n"
        "print(sorted({layer.dtype_policy.name for layer in layers(model)}))\n"
    )
    policies = subprocess.run([sys.executable, "-c", check, str(run / "model.keras")], capture_output=True, text=True)
    assert policies.returncode == 0, policies.stderr[-3000:]
    assert policies.stdout.strip() == "['float32']"

    exported = subprocess.run(
        [sys.executable, "-m", "edgetl", "export", str(run), "--formats", "tflite-float32"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr[-3000:]
    (record,) = json.loads((run / "exports.json").read_text())
    assert record["format"] == "tflite-float32" and record["agreement"] == 1.0
