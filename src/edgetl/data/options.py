"""What a layout reader needs besides the source, with the defaults training uses: light, so the CLI reads them."""

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
