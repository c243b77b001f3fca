"""Tables for the terminal: the essential columns by default, every column when asked (`--wide`), units in the
headings, the best value of each column marked. Drawn with rich, imported only when a table is drawn."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

BEST_MARK = "*"


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
    with an ellipsis rather than wrapped, so every row stays one line. With `color`, ANSI styles: the best
    values bold green; without, they carry BEST_MARK (the other numbers a space, so the digits stay aligned)."""
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold" if color else "")
    for column in columns:
        table.add_column(
            column.heading,
            justify="right" if column.numeric else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=min(len(column.heading), 8) if not column.numeric else None,
        )
    best = [column.best_rows(rows) for column in columns]
    for index, row in enumerate(rows):
        cells = []
        for position, column in enumerate(columns):
            text = column.cell(row) + (row_suffix(index) if position == 0 else "")
            if color:
                cells.append(Text(text, style="bold green" if index in best[position] else ""))
            elif index in best[position]:
                cells.append(Text(text + BEST_MARK))
            else:
                cells.append(Text(text + (" " if best[position] and column.numeric else "")))
        table.add_row(*cells)
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
