"""Tables for the terminal: the essential columns by default, every column when asked (`--wide`), units in the
headings, the best value of each column marked. Drawn with rich, imported only when a table is drawn."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

BEST_MARK = "*"
COLUMN_GAP = 3  # between two columns of the SIMPLE_HEAD box: its separator and a space of padding each side


def best_note(color: bool) -> str:
    """The line under a table that says how the best values are marked."""
    return f"{'bold green' if color else BEST_MARK}: best of its column"


@dataclass(frozen=True)
class Column:
    heading: str  # with its unit: "p50 ms", "size MB"
    cell: Callable[[Any], str]
    essential: bool = True  # shown without --wide
    best: str | None = None  # "min" or "max": the row(s) with that value are marked
    value: Callable[[Any], float | None] | None = None  # what `best` compares (None: the row takes no part)
    numeric: bool = False  # right-aligned

    def best_rows(self, rows: Sequence) -> set[int]:
        """The rows holding the best value, when there is a choice (two rows or more, not all equal)."""
        if self.best is None or self.value is None:
            return set()
        values = {index: self.value(row) for index, row in enumerate(rows)}
        values = {index: value for index, value in values.items() if value is not None}
        if len(set(values.values())) < 2:
            return set()
        target = (min if self.best == "min" else max)(values.values())
        return {index for index, value in values.items() if value == target}


def shown_columns(columns: Sequence[Column], wide: bool) -> list[Column]:
    return [column for column in columns if wide or column.essential]


def wrap_lines(lines: Sequence[str], width: int | None) -> list[str]:
    """Lines of prose (a title, notes) wrapped to `width`, continuation lines indented."""
    if width is None:
        return list(lines)
    return [part for line in lines for part in textwrap.wrap(line, width, subsequent_indent="  ") or [""]]


def render_table(
    rows: Sequence,
    columns: Sequence[Column],
    width: int | None = None,
    color: bool = False,
    row_suffix: Callable[[int], str] = lambda index: "",
) -> str:
    """The rows as a table no wider than `width` (None: as wide as the cells need). Long text cells are cut
    with an ellipsis rather than wrapped, so every row stays one line; numbers are never cut: a terminal too narrow
    for them gets the stacked layout (`stacked`), never a table without its rows. With `color`, ANSI styles: the
    best values bold green; without, they carry BEST_MARK (the other numbers a space, so the digits stay
    aligned)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    best = [column.best_rows(rows) for column in columns]
    if width is not None and _narrowest(rows, columns) > width:
        return stacked(rows, columns, best, color, row_suffix)
    texts = [
        [column.cell(row) + (row_suffix(index) if position == 0 else "") for position, column in enumerate(columns)]
        for index, row in enumerate(rows)
    ]
    limits = _text_widths(texts, columns, width)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold" if color else "")
    for position, column in enumerate(columns):
        table.add_column(
            _cut(column.heading, limits.get(position)), justify="right" if column.numeric else "left", no_wrap=True
        )
    for index, cells in enumerate(texts):
        shown = []
        for position, column in enumerate(columns):
            text = _cut(cells[position], limits.get(position))
            if color:
                shown.append(Text(text, style="bold green" if index in best[position] else ""))
            elif index in best[position]:
                shown.append(Text(text + BEST_MARK))
            else:
                shown.append(Text(text + (" " if best[position] and column.numeric else "")))
        table.add_row(*shown)
    return _printed(table, None, color)


def _cut(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _text_widths(texts: list[list[str]], columns: Sequence[Column], width: int | None) -> dict[int, int]:
    """How wide each text column may be for the table to fit `width`: the widest are narrowed first, none below
    its minimum; number columns keep their width."""
    text_columns = [position for position, column in enumerate(columns) if not column.numeric]
    if width is None or not text_columns:
        return {}
    widths = {
        position: max([len(columns[position].heading), *(len(cells[position]) for cells in texts)])
        for position in text_columns
    }
    numbers = sum(_numeric_width(column, texts, position) for position, column in enumerate(columns) if column.numeric)
    excess = sum(widths.values()) + numbers + COLUMN_GAP * (len(columns) - 1) - width
    while excess > 0:
        widest = max(widths, key=widths.get)
        floor = _text_min_width(columns[widest])
        others = [value for position, value in widths.items() if position != widest]
        target = max(floor, max(others, default=floor), widths[widest] - excess)
        if target >= widths[widest]:
            target = widths[widest] - 1
        if target < floor:
            break
        excess -= widths[widest] - target
        widths[widest] = target
    return widths


def _text_min_width(column: Column) -> int:
    return min(len(column.heading), 8)


def _numeric_width(column: Column, texts_or_rows: Sequence, position: int | None = None) -> int:
    """A number column is never cut: as wide as its heading and its widest cell with the best mark."""
    cells = [len(entry[position]) if position is not None else len(column.cell(entry)) for entry in texts_or_rows]
    return max([len(column.heading), *(cell + 1 for cell in cells)])


def _narrowest(rows: Sequence, columns: Sequence[Column]) -> int:
    """The narrowest the table can be drawn with every number and numeric heading whole: only text cells (names,
    paths) may be cut, to their column's minimum width."""
    widths = [_numeric_width(column, rows) if column.numeric else _text_min_width(column) for column in columns]
    return sum(widths) + COLUMN_GAP * (len(columns) - 1)


def stacked(
    rows: Sequence,
    columns: Sequence[Column],
    best: list[set[int]],
    color: bool,
    row_suffix: Callable[[int], str] = lambda index: "",
) -> str:
    """The narrow layout, for a terminal too narrow for the table: one block per row, its first cell as the block's
    heading and then one `heading: value` line per column. Every row and value is shown whole; nothing is cut."""
    lines = []
    for index, row in enumerate(rows):
        values = []
        for position, column in enumerate(columns):
            text = column.cell(row) + (row_suffix(index) if position == 0 else "")
            if index in best[position]:
                text = f"\x1b[1;32m{text}\x1b[0m" if color else text + BEST_MARK
            values.append(text)
        lines.append(values[0])
        lines.extend(f"  {column.heading}: {value}" for column, value in zip(columns[1:], values[1:], strict=True))
    return "\n".join(lines)


def _printed(table, width: int | None, color: bool) -> str:
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width or 10_000,
        force_terminal=color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
    )
    console.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines() if line.strip())
