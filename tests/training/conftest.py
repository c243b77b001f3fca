"""Fixtures for the training tests: tiny digit data in every layout's raw material, and a local backbone
weights file that stands in for ImageNet (no network here) so that the frozen-backbone stages can run."""

from __future__ import annotations

from pathlib import Path

import pytest

SIZE = 32


@pytest.fixture(scope="session")
def digits(make_digits) -> Path:
    return make_digits(6)


@pytest.fixture(scope="session")
def backbone_weights(tmp_path_factory) -> Path:
    """MobileNetV2 alpha 0.35 at 32 px, randomly initialised, saved as a local weights file."""
    import keras

    from edgetl.models.backbones import get_backbone
    from edgetl.models.classifier import build_backbone

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    build_backbone(get_backbone("mobilenetv2"), SIZE, 0.35, "none").save_weights(path)
    return path


def tiny_args(weights) -> list[str]:
    return [
        "--alpha", "0.35", "--image-size", str(SIZE), "--weights", str(weights),
        "--epochs", "1", "--batch-size", "16", "--quiet", "--seed", "3",
    ]  # fmt: skip
