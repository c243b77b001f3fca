"""The run's configuration: small dataclasses saved as JSON in the run directory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from edgetl.data.options import AugmentConfig, LayoutOptions
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
    patience: int = 5
    # Where the data comes from: auto-detected unless given (folder, presplit, csv, npz, tfds); how it is split
    # (fractions, seed) and the CSV overrides.
    layout: str = "auto"
    layout_options: LayoutOptions = field(default_factory=LayoutOptions)
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
    # Training-time augmentation (never in the saved model), and its strengths.
    augment: bool = False
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def seed(self) -> int:
        """The one seed: of the split, the shuffles and the new weights."""
        return self.layout_options.seed

    @classmethod
    def from_options(cls, data_dir: str, **options) -> TrainConfig:
        """A config from flat options, as `edgetl.train` and the CLI take them (`seed=1, flip="none"`): each goes
        to the option object that has a field of its name, the rest to TrainConfig itself."""
        parts = {}
        for name, option_class in TRAIN_PARTS.items():
            names = {f.name for f in fields(option_class)}
            parts[name] = option_class(**{key: options.pop(key) for key in list(options) if key in names})
        return cls(data_dir=data_dir, **parts, **options)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> TrainConfig:
        """Parse and check (edgetl.schemas: types and ranges); unknown keys, from a newer edgetl, are ignored, and a
        run written before the option objects were composed in (their fields flat) reads alike."""
        from edgetl.schemas import read_train_config

        return read_train_config(text, source)


# TrainConfig's fields that are option objects of their own, and their classes: config.json nests their fields
# under these names; `from_options` and the schema (edgetl.schemas) take them flat.
TRAIN_PARTS = {"layout_options": LayoutOptions, "augmentation": AugmentConfig}
