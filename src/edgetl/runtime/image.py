"""The one place that turns an image file into model input pixels.

Training, export calibration, verification, bench and classify all call `load_image`, so the pixels a device
feeds its model are the pixels the model was trained on.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgetl.errors import DataError
from edgetl.runtime.bounds import MAX_BUDGET_MEGAPIXELS, check_positive

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"})

RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}

# The pixel budget: an image is refused, as that file's error, when decoding it would make more than this many
# pixels. It is checked on the header before any pixel is decoded, so a decompression bomb (a tiny PNG declaring
# 30000x30000) costs nothing. Pixels are counted as decoded: a JPEG is decoded at 1/2, 1/4 or 1/8 scale when the
# model input is that much smaller (`draft`), so large photos pass, while PNG, TIFF and the rest decode whole.
# 40 megapixels of RGBA is 160 MB for each decoding thread; `edgetl --max-megapixels` raises it for huge scans.
MAX_MEGAPIXELS = 40.0
# A JPEG is decoded at the smallest scale that still leaves this factor over the model input, as Pillow's
# thumbnail() does, so the bilinear resize that follows has pixels to average.
DRAFT_MARGIN = 2

# Exceptions Pillow raises on damaged or hostile files (found by tests/runtime/test_hostile.py's fuzzing).
DECODING_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)

# Pillow's own guard warns over its limit and refuses at twice it; ours is the rule, and refuses first.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_max_pixels = int(MAX_MEGAPIXELS * 1_000_000)


def set_max_megapixels(megapixels: float) -> None:
    """Change the pixel budget for this process (what `edgetl --max-megapixels` does)."""
    global _max_pixels
    check_positive(megapixels, "--max-megapixels", MAX_BUDGET_MEGAPIXELS)
    _max_pixels = int(megapixels * 1_000_000)
    # Pillow would refuse an image over twice its own limit while opening it, before our budget is asked.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, _max_pixels)


def max_pixels() -> int:
    return _max_pixels


def is_image_file(path: Path) -> bool:
    """A regular file (or a link to one) with an image suffix and a name that is not hidden.

    A file that cannot even be looked at (a folder on its path denies access) counts, so that decoding it
    reports why instead of the file vanishing from the list.
    """
    if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
        return False
    try:
        return path.is_file()
    except OSError:
        return True


def walk_without_loops(base, onerror=None):
    """os.walk following links, but never into a folder already visited (a link back up the tree would loop
    forever); the caller may prune `subfolders` as with os.walk."""
    visited: set[tuple[int, int]] = set()
    for directory, subfolders, names in os.walk(base, onerror=onerror, followlinks=True):
        try:
            identity = os.stat(directory)
        except OSError:
            continue
        if (identity.st_dev, identity.st_ino) in visited:
            subfolders.clear()
            continue
        visited.add((identity.st_dev, identity.st_ino))
        yield directory, subfolders, names


def find_images(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The image files below `folder` at any depth (sorted), and (folder, reason) for each one that could not be
    listed, so that its images are reported missing instead of silently left out."""
    unlisted: list[tuple[Path, str]] = []

    def cannot_list(error: OSError) -> None:
        reason = error.strerror or type(error).__name__
        unlisted.append((Path(error.filename), f"folder cannot be listed ({reason}); its images were not read"))

    files = []
    for directory, _, names in walk_without_loops(folder, onerror=cannot_list):
        files.extend(path for path in (Path(directory, name) for name in names) if is_image_file(path))
    return sorted(files), unlisted


def _pattern_regex(pattern: str) -> re.Pattern:
    """A glob pattern as a regular expression over '/'-separated paths: `*`, `?` and `[...]` stay within one name,
    a `**` name matches any number of folders (none too), as `glob.glob(recursive=True)` reads it."""
    parts = []
    for index, name in enumerate(pattern.split("/")):
        last = index == len(pattern.split("/")) - 1
        if name == "**":
            parts.append(".*" if last else "(?:[^/]*/)*")
            continue
        regex, position = "", 0
        while position < len(name):
            char = name[position]
            closing = name.find("]", position + 2) if char == "[" else -1
            if char == "*":
                regex += "[^/]*"
            elif char == "?":
                regex += "[^/]"
            elif closing != -1:
                inside = name[position + 1 : closing]
                regex += "[" + ("^" + inside[1:] if inside.startswith("!") else inside).replace("\\", "\\\\") + "]"
                position = closing
            else:
                regex += re.escape(char)
            position += 1
        parts.append(regex + ("" if last else "/"))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def glob_without_loops(pattern: str) -> list[Path]:
    """The files a recursive glob pattern (`photos/**/*.png`) matches, sorted; folders reached through links are
    followed once, never round a loop (Python's glob follows a link back up the tree until paths grow too long).
    Names starting with a dot are matched only by a pattern name that starts with one, as glob does."""
    names = pattern.split("/")
    fixed = next(index for index, name in enumerate(names) if set(name) & set("*?["))
    base = "/".join(names[:fixed]) or ("/" if pattern.startswith("/") else ".")
    if pattern.startswith("/") and fixed == 1:
        base = "/"
    matcher = _pattern_regex(pattern)
    hidden_allowed = any(name.startswith(".") and set(name) & set("*?[") for name in names)
    found: list[Path] = []
    for directory, subfolders, files in walk_without_loops(base):
        if not hidden_allowed:
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            files = [name for name in files if not name.startswith(".")]
        for name in files:
            path = os.path.join(directory, name)
            shown = os.path.relpath(path) if base == "." else path
            if matcher.match(shown):
                found.append(Path(shown))
    return sorted(found)


def _open_regular_file(path: Path) -> BinaryIO:
    """Open `path` for reading only if it is a regular file: a FIFO or a device would block or never end."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied (cannot read the file or enter a folder on its path)") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be opened ({error.strerror or error})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = (
            "a folder"
            if stat.S_ISDIR(mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise DataError(f"{path}: is {kind}, not an image file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


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


def load_image(
    path: str | Path, size: tuple[int, int], resize: str = "bilinear", max_pixels: int | None = None
) -> np.ndarray:
    """Decode `path` to a (height, width, 3) uint8 array resized to `size` = (height, width), no crop.

    Every way a file can fail (missing, unreadable, not a regular file, over the pixel budget, damaged) raises a
    `DataError` naming the file. `max_pixels` defaults to the process's budget (MAX_MEGAPIXELS).
    """
    path = Path(path)
    limit = _max_pixels if max_pixels is None else max_pixels
    height, width = size
    with _open_regular_file(path) as handle:
        try:
            with Image.open(handle) as image:
                if image.format == "JPEG":
                    # EXIF may turn the picture a quarter: ask for the margin on both sides whichever way it lands.
                    side = DRAFT_MARGIN * max(height, width)
                    image.draft(None, (side, side))
                decoded_width, decoded_height = image.size
                if decoded_width * decoded_height > limit:
                    raise DataError(
                        f"{path}: {decoded_width}x{decoded_height} pixels is over the limit of "
                        f"{limit / 1e6:g} megapixels per image; raise it with edgetl --max-megapixels N"
                    )
                image.load()
                rgb = to_rgb(image)
        except Image.DecompressionBombError:  # Pillow's own guard, at twice its limit, answered before ours
            declared = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
            raise DataError(
                f"{path}: declares more than {declared:.0f} megapixels, over the limit of {limit / 1e6:g} "
                f"megapixels per image (a decompression bomb?); raise it with edgetl --max-megapixels N"
            ) from None
        except DECODING_ERRORS as error:
            raise DataError(f"{path}: cannot be decoded as an image ({error})") from None
    return fit_to_input(rgb, size, resize)


def fit_to_input(rgb: Image.Image, size: tuple[int, int], resize: str = "bilinear") -> np.ndarray:
    """An RGB image resized to the model's `size` = (height, width), no crop, as a uint8 array."""
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
