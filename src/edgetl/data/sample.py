"""Built-in sample data: scikit-learn's bundled handwritten digits, written as a class-per-folder PNG tree, and
crops of the natural colour photographs that scikit-image and scikit-learn ship.

Real images that exist offline, so the demo and the tests take exactly the path a user's own folder takes.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image

from edgetl.errors import DataError, MissingExtraError
from edgetl.files import staged_folder

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
    require_new_folder(out_dir)
    digits = load_digits()
    counts: dict[str, int] = {}
    with staged_folder(out_dir) as staging:
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
    return counts


def require_new_folder(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DataError(f"{out_dir}: folder exists and is not empty; choose a new folder for the sample data")


# The colour photographs scikit-image ships inside its wheel (others it would download) and scikit-learn's two.
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "immunohistochemistry")


def natural_photos() -> dict[str, np.ndarray]:
    """Name -> RGB uint8 array of every bundled natural colour photograph."""
    try:
        from skimage import data
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise MissingExtraError("scikit-image and scikit-learn", "train", "natural sample photographs") from None
    photos = {}
    for name in SKIMAGE_PHOTOS:
        image = getattr(data, name)()
        photos[name] = np.asarray(image[0] if isinstance(image, tuple) else image)  # stereo: the left view
    sample = load_sample_images()
    for filename, image in zip(sample.filenames, sample.images, strict=True):
        photos[Path(filename).stem] = np.asarray(image)
    return photos


def random_crop(photo: np.ndarray, rng: random.Random, size: int, smallest: float = 0.1) -> Image.Image:
    """A square crop of `smallest`..100% of the shorter side, anywhere in the photo, mirrored half the time."""
    height, width = photo.shape[:2]
    side = max(1, int(min(height, width) * rng.uniform(smallest, 1.0)))
    top, left = rng.randint(0, height - side), rng.randint(0, width - side)
    crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((size, size), Image.Resampling.BILINEAR)
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def write_natural_crops(out_dir: Path, count: int, size: int = 224, seed: int = 0) -> list[Path]:
    """Write `count` random crops of the bundled photographs, in turn, as JPEG files in one plain folder:
    realistic, unlabelled images for calibrating and verifying a pretrained network."""
    out_dir = Path(out_dir)
    require_new_folder(out_dir)
    photos = list(natural_photos().items())
    rng = random.Random(seed)
    names = []
    with staged_folder(out_dir) as staging:
        for index in range(count):
            name, photo = photos[index % len(photos)]
            names.append(f"{name}_{index:04d}.jpg")
            random_crop(photo, rng, size).save(staging / names[-1], quality=92)
    return [out_dir / name for name in names]
