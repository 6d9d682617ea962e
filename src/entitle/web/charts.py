"""Server-rendered SVG charts for the admin reports: pure functions from numbers to markup.

Decisions: a chart is an `<svg role="img">` named by its own `<title>` and `<desc>` (what a screen reader
says), each bar carries a `<title>` with its exact value, and every text that came from data is escaped.
Size comes from the `viewBox` alone, so the chart fills its container's width at any screen size. Colors
are presentation attributes (`currentColor`, a fixed palette) with a class on each shape (`bar`,
`series-1` ... `series-6`, `grid`), so a stylesheet can theme charts without touching this code. No
script, no external assets, and no `style` attribute: the pages' Content-Security-Policy forbids inline
styles.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping, Sequence
from datetime import date

# Drawing units of the viewBox; the rendered size follows the container.
WIDTH = 640
HEIGHT = 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 32, 36
# Behind each series' custom property: distinguishable, and readable on light and dark backgrounds.
_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1")
_TEXT = 'fill="currentColor" font-family="system-ui, sans-serif" font-size="12"'
_GRID = 'class="grid" stroke="currentColor" stroke-opacity="0.2"'


def esc(value: object) -> str:
    """Text or attribute value, escaped for XML (quotes included)."""
    return html.escape(str(value), quote=True)


def nice_ticks(largest: int, *, most: int = 4) -> list[int]:
    """Axis ticks from 0 in steps of 1, 2 or 5 x 10^n, at most `most` steps, reaching at least `largest`."""
    largest = max(largest, 1)
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            steps = -(-largest // step)
            if steps <= most:
                return [step * index for index in range(steps + 1)]
        magnitude *= 10


def _chart_id(kind: str, title: str, chart_id: str | None) -> str:
    if chart_id is not None:
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in chart_id) or kind
    return f"{kind}-{hashlib.sha256(title.encode()).hexdigest()[:10]}"


def _open(chart_id: str, title: str, description: str, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" preserveAspectRatio="xMidYMid meet" '
        f'class="chart">',
        f'<title id="{chart_id}-title">{esc(title)}</title>',
        f'<desc id="{chart_id}-desc">{esc(description)}</desc>',
        f'<text x="{_LEFT}" y="18" {_TEXT} font-weight="600">{esc(title)}</text>',
    ]


def daily_bars(
    series: Sequence[tuple[date, int]],
    *,
    title: str,
    unit: str = "",
    chart_id: str | None = None,
) -> str:
    """A bar per day, with a value axis and the first, middle and last dates; `unit` names the values."""
    ident = _chart_id("daily", title, chart_id)
    values = [max(value, 0) for _, value in series]
    label = f" {unit}" if unit else ""
    if series:
        peak = max(values)
        peak_day = series[values.index(peak)][0]
        description = (
            f"{len(series)} days from {series[0][0].isoformat()} to {series[-1][0].isoformat()}: "
            f"{sum(values)}{label} in all, at most {peak} on {peak_day.isoformat()}."
        )
    else:
        description = "No days to show."
    parts = _open(ident, title, description, HEIGHT)
    plot_width, plot_height = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    baseline = _TOP + plot_height
    ticks = nice_ticks(max(values, default=0))
    top = ticks[-1]
    for tick in ticks:
        y = baseline - plot_height * tick / top
        parts.append(f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.2f}" y2="{y:.2f}" {_GRID}/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.2f}" text-anchor="end" {_TEXT}>{tick}</text>')
    if not series:
        middle = _TOP + plot_height / 2
        parts.append(f'<text x="{WIDTH / 2}" y="{middle}" text-anchor="middle" {_TEXT}>No data</text>')
    slot = plot_width / max(len(series), 1)
    bar_width = max(slot * 0.8, 0.5)
    for index, ((day, _), value) in enumerate(zip(series, values, strict=True)):
        height = plot_height * value / top
        x = _LEFT + slot * index + (slot - bar_width) / 2
        parts.append(
            f'<rect class="bar" x="{x:.2f}" y="{baseline - height:.2f}" width="{bar_width:.2f}" '
            f'height="{height:.2f}" fill="currentColor">'
            f"<title>{esc(day.isoformat())}: {value}{esc(label)}</title></rect>"
        )
    for index in sorted({0, len(series) // 2, len(series) - 1} if series else set()):
        x = _LEFT + slot * index + slot / 2
        anchor = (
            "start" if index == 0 and len(series) > 1 else "end" if index == len(series) - 1 else "middle"
        )
        parts.append(
            f'<text x="{x:.2f}" y="{baseline + 18}" text-anchor="{anchor}" {_TEXT}>'
            f"{esc(series[index][0].isoformat())}</text>"
        )
    parts.append(f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{baseline}" y2="{baseline}" {_GRID}/>')
    parts.append("</svg>")
    return "\n".join(parts)


def stacked_bars(
    groups: Mapping[str, Mapping[str, int]],
    *,
    title: str,
    unit: str = "",
    chart_id: str | None = None,
) -> str:
    """One horizontal bar per group (a store), split into its parts (products), with a legend.

    The shape of the report's `active.by_product`; bar lengths share one scale, so groups compare.
    """
    ident = _chart_id("stacked", title, chart_id)
    label = f" {unit}" if unit else ""
    parts_order = sorted({part for members in groups.values() for part in members})
    colors = {part: _series_color(index) for index, part in enumerate(parts_order)}
    totals = {group: sum(max(v, 0) for v in members.values()) for group, members in groups.items()}
    description = "; ".join(
        _group_summary(group, members, totals[group], label) for group, members in groups.items()
    )
    row, gap, label_width = 28, 12, 110
    legend_rows = -(-len(parts_order) // 3)
    height = _TOP + len(groups) * (row + gap) + 16 + legend_rows * 20 + 8
    parts = _open(ident, title, description or "Nothing to show.", height)
    plot_left = _LEFT + label_width - 40
    plot_width = WIDTH - plot_left - _RIGHT - 48
    top = max(totals.values(), default=0) or 1
    for index, (group, members) in enumerate(groups.items()):
        y = _TOP + index * (row + gap)
        parts.append(
            f'<text x="{plot_left - 8}" y="{y + row / 2 + 4}" text-anchor="end" {_TEXT}>{esc(group)}</text>'
        )
        x = float(plot_left)
        for part in parts_order:
            value = max(members.get(part, 0), 0)
            if value == 0:
                continue
            width = plot_width * value / top
            parts.append(
                f'<rect class="segment {colors[part][0]}" x="{x:.2f}" y="{y}" width="{width:.2f}" '
                f'height="{row}" fill="{colors[part][1]}">'
                f"<title>{esc(group)}, {esc(part)}: {value}{esc(label)}</title></rect>"
            )
            x += width
        parts.append(f'<text x="{x + 6:.2f}" y="{y + row / 2 + 4}" {_TEXT}>{totals[group]}</text>')
    legend_top = _TOP + len(groups) * (row + gap) + 8
    for index, part in enumerate(parts_order):
        x = plot_left + (index % 3) * (plot_width / 3)
        y = legend_top + (index // 3) * 20
        parts.append(
            f'<rect class="swatch {colors[part][0]}" x="{x:.2f}" y="{y}" width="12" height="12" '
            f'fill="{colors[part][1]}"/>'
        )
        parts.append(f'<text x="{x + 18:.2f}" y="{y + 11}" {_TEXT}>{esc(part)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _group_summary(group: str, members: Mapping[str, int], total: int, label: str) -> str:
    shown = [f"{part} {value}" for part, value in members.items() if value > 0]
    return f"{group}: {total}{label}" + (f" ({', '.join(shown)})" if shown else "")


def _series_color(index: int) -> tuple[str, str]:
    """The class and fill of series `index` (the class lets a stylesheet recolor it)."""
    slot = index % len(_PALETTE)
    return f"series-{slot + 1}", _PALETTE[slot]
