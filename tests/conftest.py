"""Shared tiny fixtures: a few real sample images, one run trained for one epoch, its exports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMAGE_SIZE = 32


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """10 digit classes x 9 real images, as PNG files in one folder per class."""
    from edgetl.data.sample import write_sample_data

    root = tmp_path_factory.mktemp("sample") / "digits"
    write_sample_data(root, per_class=9)
    return root


@pytest.fixture(scope="session")
def trained_run(sample_dir, tmp_path_factory) -> Path:
    from edgetl.config import TrainConfig
    from edgetl.train.fit import train

    config = TrainConfig(
        data_dir=str(sample_dir),
        backbone="mobilenetv2",
        alpha=0.35,
        image_size=IMAGE_SIZE,
        weights="none",
        epochs=1,
        batch_size=16,
        seed=7,
    )
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(config, out, verbose=False)
    return out


@pytest.fixture(scope="session")
def exported_run(trained_run) -> Path:
    """The tiny run with every format exported. A one-epoch model is nearly uniform, so int8 may flip some
    top-1 choices: the gate is off here, and fidelity is asserted on the numbers instead."""
    from edgetl.export.exporter import export_run

    export_run(trained_run, ["tflite-float32", "tflite-int8", "onnx"], calibration_samples=20, min_agreement=0.0)
    return trained_run
