"""The defaults of `edgetl classify`, light so the CLI reads them without importing NumPy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassifySettings:
    top_k: int = 3  # labels shown per image
    threshold: float = 0.0  # below this top-1 score the answer is "unknown"
    batch_size: int = 16  # images decoded and run together
