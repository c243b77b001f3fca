"""`edgetl classify --watch DIR`: each image that lands in a folder (a camera dropping frames), as it lands."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from edgetl.runtime.image import is_image_file


def _image_sizes(folder: Path) -> dict[Path, int]:
    sizes = {}
    for path in folder.rglob("*"):
        try:
            if is_image_file(path):
                sizes[path] = path.stat().st_size
        except OSError:  # removed between listing and stat
            continue
    return sizes


def new_images(folder: Path, poll_seconds: float = 0.25, stop: Callable[[], bool] = lambda: False) -> Iterator[Path]:
    """Yield image files that appear under `folder` after the call, oldest first.

    A file is yielded once its size has stayed the same for one poll, so a frame still being copied in is not
    read half-written. Files already there when this is called are left alone: the folder is listed now, not at
    the first iteration, so a file that lands after the caller says it is watching is never taken for an old one.
    """
    return _arrivals(folder, set(_image_sizes(folder)), poll_seconds, stop)


def _arrivals(folder: Path, seen: set[Path], poll_seconds: float, stop: Callable[[], bool]) -> Iterator[Path]:
    pending: dict[Path, int] = {}
    while not stop():
        for path, size in sorted(_image_sizes(folder).items()):
            if path in seen:
                continue
            if size > 0 and pending.get(path) == size:
                seen.add(path)
                del pending[path]
                yield path
            else:
                pending[path] = size
        time.sleep(poll_seconds)
