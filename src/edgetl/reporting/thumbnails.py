"""Small JPEG thumbnails inlined in the page, each image once however many sections show it."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from edgetl.errors import DataError

# Side of a thumbnail in pixels: enough to recognise an image, small enough that hundreds keep the page light.
THUMBNAIL_PIXELS = 64
JPEG_QUALITY = 80


def thumbnail_jpeg(path: Path) -> bytes:
    """The image at `path` as the model sees it (square, no crop), shrunk to a thumbnail; decoded by the same
    guarded function as every image edgetl reads (regular files only, pixel budget)."""
    from PIL import Image

    from edgetl.runtime.image import load_image

    pixels = load_image(path, (THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


class Thumbnails:
    """Image files turned into CSS classes holding their thumbnail: an image flipped by several files, or shown
    as a mistake and a flip, is in the page once. The element is a plain block with a background, which needs no
    script and no request."""

    def __init__(self) -> None:
        self._classes: dict[str, str | None] = {}  # file -> CSS class, None when it could not be read
        self._rules: list[str] = []
        self.unreadable: list[str] = []  # one line per file that could not be shown

    def tag(self, file: str, caption: str = "") -> str:
        """An element showing the thumbnail of `file` (its name and `caption` as the tooltip), or a placeholder
        saying the image could not be read."""
        if file not in self._classes:
            self._classes[file] = self._add(file)
        css_class = self._classes[file]
        title = html.escape(f"{file}\n{caption}".strip(), quote=True)
        if css_class is None:
            return f'<span class="thumb missing" role="img" aria-label="{title}" title="{title}">?</span>'
        return f'<span class="thumb {css_class}" role="img" aria-label="{title}" title="{title}"></span>'

    def _add(self, file: str) -> str | None:
        try:
            data = thumbnail_jpeg(Path(file))
        except DataError as error:
            self.unreadable.append(str(error))
            return None
        css_class = f"t{len(self._rules)}"
        encoded = base64.b64encode(data).decode("ascii")
        self._rules.append(f".{css_class}{{background-image:url(data:image/jpeg;base64,{encoded})}}")
        return css_class

    @property
    def count(self) -> int:
        return len(self._rules)

    def css(self) -> str:
        return "\n".join(self._rules)
