"""Charts as inline SVG written here: no charting library, no script, and text escaped like the rest of the page."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

# Colour-blind-safe palette (Okabe-Ito), cycled.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442", "#000000")
WIDTH, HEIGHT = 460, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 52, 22, 24, 40
TICKS = 5
LOG_SPREAD = 20  # a scatter's x axis is logarithmic when its largest value is this many times its smallest


@dataclass(frozen=True)
class Series:
    name: str
    xs: list[float]
    ys: list[float]
    dashed: bool = False
    colour: int = 0  # index into PALETTE


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # the tooltip
    group: str  # points of one group share a colour and a legend entry
    kind: str = ""  # points of one kind share a marker shape (the machine they were measured on)


MARKERS = ("circle", "square", "triangle", "diamond")
MARKER_SYMBOLS = {"circle": "●", "square": "■", "triangle": "▲", "diamond": "◆"}


def _marker(shape: str, x: float, y: float, colour: str, title: str) -> str:
    tooltip = f"<title>{escape(title)}</title>"
    style = f'fill="{colour}" fill-opacity="0.8"'
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" {style}>{tooltip}</circle>'
    if shape == "square":
        return f'<rect x="{x - 4.5:.1f}" y="{y - 4.5:.1f}" width="9" height="9" {style}>{tooltip}</rect>'
    corners = (
        [(x, y - 6), (x + 6, y + 4), (x - 6, y + 4)]
        if shape == "triangle"
        else [(x, y - 6), (x + 6, y), (x, y + 6), (x - 6, y)]
    )
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in corners)
    return f'<polygon points="{points}" {style}>{tooltip}</polygon>'


@dataclass
class Axes:
    """Linear scales from data to the plot area, with round tick values."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    ticks_x: list[float] = field(default_factory=list)
    ticks_y: list[float] = field(default_factory=list)
    log_x: bool = False

    def x(self, value: float) -> float:
        low, high = self.x_range
        if self.log_x:
            value, low, high = math.log10(value), math.log10(low), math.log10(high)
        return MARGIN_LEFT + (value - low) / (high - low) * (WIDTH - MARGIN_LEFT - MARGIN_RIGHT)

    def y(self, value: float) -> float:
        low, high = self.y_range
        return HEIGHT - MARGIN_BOTTOM - (value - low) / (high - low) * (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM)


def nice_ticks(low: float, high: float, count: int = TICKS) -> tuple[float, float, list[float]]:
    """A range covering [low, high] that starts and ends on a round step, and the ticks at each step."""
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if high <= low:  # one value: a narrow range around it, so a flat line does not float in empty space
        pad = abs(low) * 0.05 or 0.5
        low, high = low - pad, high + pad
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start, end = math.floor(low / step) * step, math.ceil(high / step) * step
    ticks = [start + i * step for i in range(round((end - start) / step) + 1)]
    return start, end, ticks


def log_ticks(low: float, high: float) -> tuple[float, float, list[float]]:
    """Whole decades covering [low, high] (both > 0), with ticks at 1, 2 and 5 of each when there are few."""
    start, end = math.floor(math.log10(low)), math.ceil(math.log10(high))
    end = max(end, start + 1)
    steps = (1, 2, 5) if end - start <= 3 else (1,)
    ticks = [m * 10.0**e for e in range(start, end) for m in steps] + [10.0**end]
    return 10.0**start, 10.0**end, ticks


def _number(value: float) -> str:
    return f"{value:.4g}"


def _frame(axes: Axes, title: str, x_label: str, y_label: str) -> list[str]:
    bottom, right = HEIGHT - MARGIN_BOTTOM, WIDTH - MARGIN_RIGHT
    parts = [
        f'<text x="{WIDTH / 2}" y="15" text-anchor="middle" class="title">{escape(title)}</text>',
        f'<line x1="{MARGIN_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{bottom}" class="axis"/>',
        f'<text x="{(MARGIN_LEFT + right) / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="12" y="{(MARGIN_TOP + bottom) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(MARGIN_TOP + bottom) / 2})">{escape(y_label)}</text>',
    ]
    for tick in axes.ticks_x:
        x = axes.x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" class="axis"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">{_number(tick)}</text>')
    for tick in axes.ticks_y:
        y = axes.y(tick)
        parts.append(f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{MARGIN_LEFT - 5}" y="{y + 4:.1f}" text-anchor="end">{_number(tick)}</text>')
    return parts


def _legend(entries: list[tuple[str, int, bool]]) -> str:
    """A legend as HTML under the chart, so long names wrap instead of running off the drawing."""
    items = []
    for name, colour, dashed in entries:
        style = f"border-top:3px {'dashed' if dashed else 'solid'} {PALETTE[colour % len(PALETTE)]}"
        items.append(f'<span class="key"><i style="{style}"></i>{escape(name)}</span>')
    return f'<div class="legend">{"".join(items)}</div>'


def _svg(parts: list[str], label: str) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(label, quote=True)}">' + "".join(parts) + "</svg>"
    )


def line_chart(series: list[Series], title: str, x_label: str, y_label: str, dividers: list[float] = ()) -> str:
    """Lines through each series' points, vertical dashed `dividers` (where stage 2 starts), legend below."""
    xs = [x for s in series for x in s.xs]
    ys = [y for s in series for y in s.ys if math.isfinite(y)]
    if not xs or not ys:
        return ""
    x_low, x_high, ticks_x = nice_ticks(min(xs), max(xs))
    y_low, y_high, ticks_y = nice_ticks(min(ys), max(ys))
    axes = Axes((x_low, x_high), (y_low, y_high), ticks_x, ticks_y)
    parts = _frame(axes, title, x_label, y_label)
    for divider in dividers:
        x = axes.x(divider)
        parts.append(
            f'<line x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{HEIGHT - MARGIN_BOTTOM}" class="divider"/>'
        )
    for s in series:
        points = [(axes.x(x), axes.y(y)) for x, y in zip(s.xs, s.ys, strict=True) if math.isfinite(y)]
        colour = PALETTE[s.colour % len(PALETTE)]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for (x, y), value in zip(points, [y for y in s.ys if math.isfinite(y)], strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"><title>'
                f"{escape(s.name)}: {_number(value)}</title></circle>"
            )
    legend = _legend([(s.name, s.colour, s.dashed) for s in series])
    return f'<figure class="chart">{_svg(parts, title)}{legend}</figure>'


def scatter(points: list[Point], title: str, x_label: str, y_label: str) -> str:
    """One dot per point, coloured by group, each with its label as a tooltip and printed beside it."""
    if not points:
        return ""
    xs = [p.x for p in points]
    # Latencies spread over decades (Keras' predict() against a TFLite call): a log axis keeps the fast ones apart.
    log_x = min(xs) > 0 and max(xs) / min(xs) >= LOG_SPREAD
    x_low, x_high, ticks_x = log_ticks(min(xs), max(xs)) if log_x else nice_ticks(0.0, max(xs))
    y_low, y_high, ticks_y = nice_ticks(min(p.y for p in points), max(p.y for p in points))
    axes = Axes((x_low, x_high), (y_low, y_high), ticks_x, ticks_y, log_x)
    x_label += " (log scale)" if log_x else ""
    parts = _frame(axes, title, x_label, y_label)
    groups, kinds = _plot_markers(points, axes, parts)
    legend = _legend([(group, index, False) for index, group in enumerate(groups)])
    if len(kinds) > 1 or kinds != [""]:
        shapes = "".join(
            f'<span class="key">{MARKER_SYMBOLS[MARKERS[i % len(MARKERS)]]} {escape(kind)}</span>'
            for i, kind in enumerate(kinds)
        )
        legend += f'<div class="legend">{shapes}</div>'
    return f'<figure class="chart">{_svg(parts, title)}{legend}</figure>'


def _plot_markers(points: list[Point], axes: Axes, parts: list[str]) -> tuple[list[str], list[str]]:
    """A marker per point into `parts`: a colour per group, a shape per kind; returns the groups and kinds, in
    order of first appearance."""
    groups = list(dict.fromkeys(p.group for p in points))
    kinds = list(dict.fromkeys(p.kind for p in points))
    for point in points:
        colour = PALETTE[groups.index(point.group) % len(PALETTE)]
        shape = MARKERS[kinds.index(point.kind) % len(MARKERS)]
        parts.append(_marker(shape, axes.x(point.x), axes.y(point.y), colour, point.label))
    return groups, kinds


# The classes the page's style sheet gives the frame, for a chart drawn as a file of its own.
STANDALONE_STYLE = (
    "text{font:11px sans-serif;fill:#333}.title{font-weight:bold}.axis{stroke:#333}.grid{stroke:#ddd}"
    ".limit{stroke:#d55e00;stroke-dasharray:5 3;stroke-width:1.5}"
)
LEGEND_ROW = 16  # pixels per legend line under a standalone chart


def standalone_scatter(points: list[Point], title: str, x_label: str, y_label: str, x_limits: list[float] = ()) -> str:
    """`scatter` as an SVG file of its own (an image for a README): linear axes, dashed vertical lines at
    `x_limits` (a budget), and the legend of colours (groups) and shapes (kinds) drawn in the SVG."""
    xs = [p.x for p in points] + list(x_limits)
    ys = [p.y for p in points]
    x_low, x_high, ticks_x = nice_ticks(0.0, max(xs) if xs else 1.0)
    y_low, y_high, ticks_y = nice_ticks(min(ys) if ys else 0.0, max(ys) if ys else 1.0)
    axes = Axes((x_low, x_high), (y_low, y_high), ticks_x, ticks_y)
    parts = _frame(axes, title, x_label, y_label)
    for limit in x_limits:
        x = axes.x(limit)
        parts.append(f'<line x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{HEIGHT - MARGIN_BOTTOM}" class="limit"/>')
    groups, kinds = _plot_markers(points, axes, parts)
    legend_y = HEIGHT + LEGEND_ROW
    entries = [(PALETTE[i % len(PALETTE)], "circle", group) for i, group in enumerate(groups)]
    entries += [("#555555", MARKERS[i % len(MARKERS)], kind) for i, kind in enumerate(kinds) if kind]
    x = MARGIN_LEFT
    for colour, shape, name in entries:
        parts.append(_marker(shape, x, legend_y - 4, colour, name))
        parts.append(f'<text x="{x + 9}" y="{legend_y}">{escape(name)}</text>')
        x += 18 + 7 * len(name)
    height = HEIGHT + 2 * LEGEND_ROW
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" role="img" aria-label="{escape(title, quote=True)}"><style>{STANDALONE_STYLE}</style>'
        f'<rect width="100%" height="100%" fill="white"/>' + "".join(parts) + "</svg>\n"
    )
