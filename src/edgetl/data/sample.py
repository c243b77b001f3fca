"""Built-in sample data: scikit-learn's bundled handwritten digits, written as a class-per-folder PNG tree.

Real images that exist offline, so the demo and the tests take exactly the path a user's own folder takes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from edgetl.errors import DataError, MissingExtraError

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def write_sample_data(out_dir: Path, per_class: int | None = None, image_size: int = 32) -> dict[str, int]:
    """Write the digits as `out_dir/<digit name>/digit_NNNN.png` (dark ink on white, RGB) and return counts.

    `per_class` limits the images per class (the first ones in scikit-learn's order; all ~180 by default).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingExtraError("scikit-learn", "train", "edgetl sample-data") from None
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DataError(f"{out_dir}: folder exists and is not empty; choose a new folder for the sample data")
    digits = load_digits()
    counts: dict[str, int] = {}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the destination, then rename: an interrupted run never leaves half a dataset.
    staging = Path(tempfile.mkdtemp(prefix=".sample-", dir=out_dir.parent))
    try:
        for index, (image, target) in enumerate(zip(digits.images, digits.target, strict=True)):
            name = DIGIT_NAMES[int(target)]
            if per_class is not None and counts.get(name, 0) >= per_class:
                continue
            # 0..16 ink intensity -> dark ink on white paper, upscaled smoothly like a scan.
            grey = (255.0 - np.asarray(image) * (255.0 / 16.0)).astype(np.uint8)
            picture = Image.fromarray(grey, mode="L").resize((image_size, image_size), Image.Resampling.BICUBIC)
            class_dir = staging / name
            class_dir.mkdir(exist_ok=True)
            picture.convert("RGB").save(class_dir / f"digit_{index:04d}.png")
            counts[name] = counts.get(name, 0) + 1
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return counts
