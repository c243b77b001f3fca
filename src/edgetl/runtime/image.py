"""The one place that turns an image file into model input pixels.

Training, export calibration, verification, bench and classify all call `load_image`, so the pixels a device
feeds its model are the pixels the model was trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgetl.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"})

RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, with EXIF orientation applied."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16- and 32-bit greyscale: scale the full range down to 8 bits instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        high = array.max() if array.max() > 1.0 else 1.0
        image = Image.fromarray(np.clip(array / high * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as most viewers show them, not the black of dropped alpha.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def load_image(path: str | Path, size: tuple[int, int], resize: str = "bilinear") -> np.ndarray:
    """Decode `path` to a (height, width, 3) uint8 array resized to `size` = (height, width), no crop."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb(image)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{path}: cannot be decoded as an image ({error})") from None
    height, width = size
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), RESAMPLING[resize])
    return np.asarray(rgb, dtype=np.uint8)


def load_images(
    paths: list[Path], size: tuple[int, int], resize: str = "bilinear", workers: int = 4
) -> tuple[np.ndarray, list[int], list[DataError]]:
    """Decode many files in parallel (Pillow releases the GIL while decoding and resizing).

    Returns the stacked pixels of the files that decoded, their indices into `paths`, and one error per file
    that did not, so that a caller can skip bad files instead of dying on the first.
    """
    from concurrent.futures import ThreadPoolExecutor

    def decode(path: Path) -> np.ndarray | DataError:
        try:
            return load_image(path, size, resize)
        except DataError as error:
            return error

    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = list(pool.map(decode, paths))
    kept = [index for index, item in enumerate(decoded) if not isinstance(item, DataError)]
    errors = [item for item in decoded if isinstance(item, DataError)]
    height, width = size
    pixels = np.stack([decoded[i] for i in kept]) if kept else np.zeros((0, height, width, 3), np.uint8)
    return pixels, kept, errors
