"""Small HTML builders: every piece of text from a run goes through `escape` here before it reaches the page."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape as _escape


def escape(value: object) -> str:
    """Text and attribute values made inert: <, >, & and both quotes become entities."""
    return _escape(str(value), quote=True)


@dataclass(frozen=True)
class Cell:
    """A table cell: its HTML (already escaped) and the value the sort script orders it by."""

    html: str
    sort: str | float | None = None


def text(value: object, sort: str | float | None = None) -> Cell:
    return Cell(escape(value), sort)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(value: object, spec: str = ".4f") -> Cell:
    """A number formatted by `spec`; anything else a run file may hold there is shown as text, never raised on."""
    if value is None:
        return Cell("-", "")
    if not is_number(value):
        return text(value, str(value))
    return Cell(escape(format(round(value) if spec.endswith("d") else value, spec)), float(value))


def percent(value: object, digits: int = 1) -> Cell:
    if not is_number(value):
        return number(value)
    return Cell(escape(f"{100 * value:.{digits}f}%"), float(value))


def table(headers: list[str], rows: list[list[Cell]], footer: list[list[Cell]] = (), sortable: bool = True) -> str:
    """A table; `sortable` ones get buttons in their headers from the page's script (without it, a plain table)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)

    def row(cells: list[Cell]) -> str:
        parts = []
        for cell in cells:
            sort = "" if cell.sort is None else f' data-v="{escape(cell.sort)}"'
            numeric = ' class="n"' if isinstance(cell.sort, int | float) else ""
            parts.append(f"<td{numeric}{sort}>{cell.html}</td>")
        return f"<tr>{''.join(parts)}</tr>"

    body = "".join(row(cells) for cells in rows)
    foot = f"<tfoot>{''.join(row(cells) for cells in footer)}</tfoot>" if footer else ""
    css = ' class="sortable"' if sortable else ""
    return f"<table{css}><thead><tr>{head}</tr></thead><tbody>{body}</tbody>{foot}</table>"


def facts(pairs: list[tuple[str, object]]) -> str:
    """A definition list of name: value pairs (values escaped), skipping those without a value."""
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in pairs if v is not None and v != "")
    return f'<dl class="facts">{items}</dl>'


def note(message: str) -> str:
    return f'<p class="note">{escape(message)}</p>'
