"""Small SVG charts drawn on the server: pass rates with intervals, loss curves, candidate bars.

Why hand-written SVG: the viewer must work offline (no CDN), and a vendored
chart library would be more code than these three charts. Every label that
comes from the store goes through `html.escape`; numbers are formatted here.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _scale(value: float, low: float, high: float, out_low: float, out_high: float) -> float:
    span = high - low or 1.0
    return out_low + (value - low) / span * (out_high - out_low)


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float, float | None, float | None]]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    percent: bool = False,
    width: int = 560,
    height: int = 260,
) -> str:
    """An SVG of named series of (x, y, low, high) points; low/high draw a shaded interval when given."""
    points = [p for _name, pts in series for p in pts]
    if not points:
        return f'<p class="muted">{escape(title)}: no data yet</p>'
    left, right, top, bottom = 48, width - 12, 24, height - 36
    xs = [p[0] for p in points]
    ys = [v for p in points for v in (p[1], p[2], p[3]) if v is not None]
    x_low, x_high = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_low, y_high = 0.0, max(max(ys), 1.0 if percent else 1e-9) * (1.0 if percent else 1.1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="14" class="title">{escape(title)}</text>',
    ]
    for tick in range(5):
        value = y_low + (y_high - y_low) * tick / 4
        y = _scale(value, y_low, y_high, bottom, top)
        label = f"{100 * value:.0f}%" if percent else f"{value:.3g}"
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" class="tick" text-anchor="end">{label}</text>')
    for x in sorted(set(xs)):
        px = _scale(x, x_low, x_high, left + 8, right - 8)
        parts.append(f'<text x="{px:.1f}" y="{bottom + 14}" class="tick" text-anchor="middle">{x:g}</text>')
    for index, (name, pts) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        coords = [
            (_scale(x, x_low, x_high, left + 8, right - 8), _scale(y, y_low, y_high, bottom, top), lo, hi)
            for x, y, lo, hi in sorted(pts)
        ]
        for px, _py, lo, hi in coords:
            if lo is not None and hi is not None:
                y1, y2 = _scale(hi, y_low, y_high, bottom, top), _scale(lo, y_low, y_high, bottom, top)
                parts.append(
                    f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" '
                    f'stroke="{colour}" stroke-width="6" stroke-opacity="0.25"/>'
                )
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _lo, _hi in coords)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for px, py, _lo, _hi in coords:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
        parts.append(
            f'<text x="{right - 4}" y="{top + 14 + 14 * index}" class="legend" text-anchor="end" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    parts.append(
        f'<text x="{(left + right) / 2:.0f}" y="{height - 4}" class="tick" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f'<text x="12" y="{(top + bottom) / 2:.0f}" class="tick" transform="rotate(-90 12 '
        f'{(top + bottom) / 2:.0f})" text-anchor="middle">{escape(y_label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def candidate_bars(commands: Sequence[str], probs: Sequence[float], chosen: int) -> str:
    """A horizontal bar per candidate command, its probability written beside it, the chosen one marked."""
    rows = []
    for index, (command, prob) in enumerate(zip(commands, probs, strict=True)):
        mark = " chosen" if index == chosen else ""
        rows.append(
            f'<div class="bar{mark}"><span class="label">{escape(command)}</span>'
            f'<span class="fill" style="width:{100 * prob:.1f}%"></span>'
            f'<span class="value">{prob:.3f}</span></div>'
        )
    return '<div class="bars">' + "".join(rows) + "</div>"
