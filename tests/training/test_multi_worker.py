"""Two machines training one model, played by two `edgetl train` processes on 127.0.0.1 with TF_CONFIG set, as
Kubeflow's TFJob or a user would start them: each reads only its shard of the images, and the chief alone writes
the run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.conftest import tiny_args

pytestmark = pytest.mark.slow


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_train_one_model_and_the_chief_writes_the_run(digits, backbone_weights, tmp_path):
    run = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    command = [sys.executable, "-m", "edgetl", "-v", "train", str(digits), "--out", str(run)]
    command += [*tiny_args(backbone_weights), "--fine-tune-epochs", "1", "--fine-tune-layers", "10", "--cache", "disk"]
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        environment = dict(os.environ, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="2")
        workers.append(subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [worker.communicate(timeout=300) for worker in workers]
    logs = [err.decode() + out.decode() for out, err in outputs]
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-3000:]
        assert "multi_worker strategy" in log
        assert "cuInit" not in log  # TensorFlow's complaint about the missing GPU stays off the terminal

    # Each worker trained both stages on its own shard: every second training image, the shards together all.
    shards = []
    for index, log in enumerate(logs):
        found = re.search(rf"worker {index} of 2: training on its shard of (\d+) training and (\d+) validation", log)
        assert found, log[-3000:]
        shards.append((int(found[1]), int(found[2])))
    split = json.loads((run / "split.json").read_text())
    assert sum(train for train, _ in shards) == len(split["train"]) and min(train for train, _ in shards) > 0
    assert sum(validation for _, validation in shards) == len(split["validation"])

    # The chief wrote the run, completely; the other worker's checkpoints went to a folder of its own, now gone.
    assert "run written to" in logs[0] and "worker 1 of 2 trained on its shard" in logs[1]
    assert "worker 1 of 2: finished {'stage1': 1, 'stage2': 1} epochs" in logs[1]
    own_folder = Path(re.search(r"worker 1 of 2: training on its shard .* writing to (\S+)", logs[1])[1])
    assert own_folder != run and not own_folder.exists()
    expected = {"model.keras", "labels.txt", "preprocessing.json", "config.json", "split.json", "history.json"}
    assert expected | {"metrics.json", "report"} == {path.name for path in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == {"stage1": 1, "stage2": 1} and metrics["cache"] == "disk"
    assert metrics["images"]["test"] == len(split["test"]) and metrics["feature_cache"] is True
    assert {path.name for path in (run / "report").iterdir()} == {
        "classification_report.json", "classification_report.txt", "confusion_matrix.png", "training_curves.png",
        "test_predictions.png", "test_predictions.json", "index.html",
    }  # fmt: skip
