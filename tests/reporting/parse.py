"""The page read back as a browser's parser sees it (stdlib html.parser): elements with their attributes and the
text of each section, entities decoded."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path


class Page(HTMLParser):
    def __init__(self, path: Path) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict, str | None]] = []  # (tag, attributes, section id)
        self.texts: list[tuple[str | None, str]] = []
        self.section: str | None = None
        self.source = Path(path).read_text(encoding="utf-8")
        self.feed(self.source)

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "section":
            self.section = attributes.get("id")
        self.elements.append((tag, attributes, self.section))

    def handle_endtag(self, tag):
        if tag == "section":
            self.section = None

    def handle_data(self, data):
        self.texts.append((self.section, data))

    @property
    def sections(self) -> list[str]:
        return [attributes["id"] for tag, attributes, _ in self.elements if tag == "section"]

    def text(self, section: str) -> str:
        return " ".join(data for where, data in self.texts if where == section)

    def tags(self, tag: str, section: str | None = None) -> list[dict]:
        return [a for t, a, where in self.elements if t == tag and (section is None or where == section)]

    def files(self, section: str) -> list[str]:
        """The data-file of each image card in `section`, in page order."""
        return [a["data-file"] for t, a, where in self.elements if where == section and "data-file" in a]
