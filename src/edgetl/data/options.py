"""The option objects training is composed of, with their defaults: what a layout reader needs besides the source,
and how training batches are augmented. Light, so the CLI reads its defaults here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayoutOptions:
    """The split fractions, the seed, and the CSV overrides."""

    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42
    id_column: str | None = None
    label_column: str | None = None
    images: str | None = None


FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical", "none")


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentations' strengths (training/augment.py builds them); a strength of 0 leaves that one out."""

    flip: str = FLIP_MODES[0]
    rotation: float = 0.1  # fraction of a full turn
    zoom: float = 0.1
    translation: float = 0.1  # fraction of the height and width
    brightness: float = 0.1  # fraction of the 0-255 range
    contrast: float = 0.1
