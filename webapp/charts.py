"""Server-drawn SVG bar charts: no JavaScript, no chart library, nothing fetched at run time.

Horizontal bars, each row a label (left) and its value as text (right) above a full-width bar,
because that stays readable on a phone: the ``viewBox`` is about a phone's width in CSS pixels
and the SVG has ``width="100%"``, so it scales to the screen with legible text. Each chart
has ``<title>``/``<desc>`` (``role="img"``) for screen readers, and every value is also printed
as text. A bar with an ``href`` is wrapped in ``<a>`` with a full-row transparent hit area, so
tapping anywhere on its row opens the drill-down. Pure functions: data in, markup out;
every caller-supplied string is escaped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 360
LABEL_W = 210  # room for the label; the value is right-aligned in the rest of the line
ROW_H = 44
BAR_H = 14
PAD = 4
FONT_PX = 13  # label font size (dashboard.css); a CJK glyph is ~1 em, Latin ~0.55 em
_ids = itertools.count(1)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float  # the length of the bar (≥ 0)
    text: str = ""  # the value as shown; defaults to the number
    href: str | None = None
    kind: str = ""  # css modifier: ok | warn | bad | A | B | C | ""


def bar_width(value: float, top: float, span: float = WIDTH) -> float:
    """Proportional length: ``value / top`` of the span (0 for zero, negative or no data)."""
    if top <= 0 or value <= 0:
        return 0.0
    return round(span * min(value, top) / top, 1)


def _glyph(ch: str) -> float:
    return FONT_PX if ord(ch) > 0x2E7F else FONT_PX * 0.55


def fit_label(label: str, px: float = LABEL_W - 8) -> str:
    """Cut a label to the label column (estimated glyph widths), ending in "…" when cut;
    the full label stays in the bar's tooltip and aria-label."""
    if sum(_glyph(c) for c in label) <= px:
        return label
    out, used = "", _glyph("…")
    for ch in label:
        if used + _glyph(ch) > px:
            break
        out, used = out + ch, used + _glyph(ch)
    return out + "…"


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def bar_chart(bars: list[Bar], title: str, desc: str = "", empty: str = "暂无数据 / No data"
              ) -> Markup:
    """One horizontal bar per item, longest = the largest value."""
    uid = f"c{next(_ids)}"
    height = max(1, len(bars)) * ROW_H + 2 * PAD
    t, d = escape(title), escape(desc or title)
    out = [f'<svg class="chart" role="img" aria-labelledby="{uid}t {uid}d" '
           f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
           f'xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{uid}t">{t}</title><desc id="{uid}d">{d}</desc>']
    if not bars:
        out.append(f'<text class="empty" x="{WIDTH / 2}" y="{height / 2 + 5}" '
                   f'text-anchor="middle">{escape(empty)}</text></svg>')
        return Markup("".join(out))  # noqa: S704 - every interpolated string is escaped
    top = max((b.value for b in bars), default=0)
    span = WIDTH
    for i, b in enumerate(bars):
        y = PAD + i * ROW_H
        w = bar_width(b.value, top, span)
        text = escape(b.text or _num(b.value))
        label = escape(b.label)
        kind = f" {escape(b.kind)}" if b.kind else ""
        row = [f'<g class="bar{kind}">',
               f'<title>{label}: {text}</title>',
               f'<rect class="hit" x="0" y="{y}" width="{WIDTH}" height="{ROW_H}" '
               f'fill="transparent"/>',
               f'<text class="label" x="0" y="{y + 16}">{escape(fit_label(b.label))}</text>',
               f'<text class="value" x="{WIDTH}" y="{y + 16}" text-anchor="end">{text}</text>',
               f'<rect class="track" x="0" y="{y + 22}" width="{WIDTH}" height="{BAR_H}" '
               f'rx="3"/>',
               f'<rect class="fill" x="0" y="{y + 22}" width="{w}" height="{BAR_H}" rx="3"/>',
               '</g>']
        if b.href:
            row = [f'<a href="{escape(b.href)}" aria-label="{label}: {text}">', *row, '</a>']
        out.extend(row)
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every interpolated string is escaped
