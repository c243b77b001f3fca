"""The run's configuration: small dataclasses saved as JSON in the run directory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from edgetl.data.options import LayoutOptions
from edgetl.models.classifier import HeadConfig

# How `--class-weight` weighs the classes in the loss: not at all, or each class the same in total.
CLASS_WEIGHTS = ("none", "balanced")
# Where `--cache` keeps decoded training pixels between epochs: "auto" chooses memory or disk by the estimated
# size (edgetl.data.dataset.choose_cache); "none" decodes the files again every epoch.
CACHES = ("auto", "memory", "disk", "none")


@dataclass
class TrainConfig:
    data_dir: str
    backbone: str = "mobilenetv2"
    alpha: float | None = None
    image_size: int = 224
    weights: str = "imagenet"
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    dropout: float = HeadConfig.dropout
    hidden_units: int = HeadConfig.hidden_units
    validation_fraction: float = LayoutOptions.validation_fraction
    test_fraction: float = LayoutOptions.test_fraction
    patience: int = 5
    seed: int = LayoutOptions.seed
    # Where the data comes from: auto-detected unless given (folder, presplit, csv, npz, tfds); CSV overrides.
    layout: str = "auto"
    id_column: str | None = None
    label_column: str | None = None
    images: str | None = None
    # Stage 2: the top of a pretrained backbone trains too, at a lower learning rate (default learning_rate / 10).
    fine_tune_epochs: int = 0
    fine_tune_layers: int | None = None
    fine_tune_from: str | None = None
    fine_tune_learning_rate: float | None = None
    class_weight: str = CLASS_WEIGHTS[0]
    # Stage 1 without augmentation trains the head on backbone features computed once (in memory, or on disk when
    # they are many).
    feature_cache: bool = True
    cache: str = CACHES[0]
    # Training-time augmentation (never in the saved model); a strength of 0 leaves that one out.
    augment: bool = False
    flip: str = "horizontal"
    rotation: float = 0.1
    zoom: float = 0.1
    translation: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> TrainConfig:
        """Parse and check (edgetl.schemas: types and ranges); unknown keys, from a newer edgetl, are ignored."""
        from edgetl.schemas import read_train_config

        return read_train_config(text, source)
