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
MARK_H = 20  # room under the bars for a marker's label
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


def bar_chart(bars: list[Bar], title: str, desc: str = "", empty: str = "暂无数据 / No data",
              *, top: float | None = None, marker: tuple[float, str] | None = None) -> Markup:
    """One horizontal bar per item, longest = the largest value (or ``top``). ``marker``
    (value, label) draws a labelled vertical line at that value across every bar (e.g. the
    share of the period gone by beside attainment bars)."""
    uid = f"c{next(_ids)}"
    height = max(1, len(bars)) * ROW_H + 2 * PAD + (MARK_H if marker and bars else 0)
    t, d = escape(title), escape(desc or title)
    out = [f'<svg class="chart" role="img" aria-labelledby="{uid}t {uid}d" '
           f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
           f'xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{uid}t">{t}</title><desc id="{uid}d">{d}</desc>']
    if not bars:
        out.append(f'<text class="empty" x="{WIDTH / 2}" y="{height / 2 + 5}" '
                   f'text-anchor="middle">{escape(empty)}</text></svg>')
        return Markup("".join(out))  # noqa: S704 - every interpolated string is escaped
    top = top if top is not None else max((b.value for b in bars), default=0)
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
    if marker:
        x = bar_width(marker[0], top, span)
        bottom = PAD + len(bars) * ROW_H
        anchor = "end" if x > WIDTH / 2 else "start"
        out.append(f'<g class="marker"><line x1="{x}" y1="{PAD}" x2="{x}" y2="{bottom}" '
                   f'stroke="#111827" stroke-width="1.5" stroke-dasharray="4 3"/>'
                   f'<text class="value" x="{x}" y="{bottom + 14}" text-anchor="{anchor}">'
                   f'┆ {escape(marker[1])}</text></g>')
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every interpolated string is escaped


# -- line charts ------------------------------------------------------------------------------
LINE_H = 150  # the plot area's height
LEGEND_H = 18
AXIS_L = 48  # room for the y-axis labels
# series told apart by dash pattern and marker shape as well as colour (not colour alone)
STYLES = (("#2563eb", "", "circle"), ("#16a34a", "6 3", "square"),
          ("#111827", "2 3", "diamond"), ("#ea580c", "8 3 2 3", "triangle"))


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float | None, ...]  # one per x label; None: no point there
    texts: tuple[str, ...] = ()  # each value as shown (tooltip, legend); default the number


def short_num(value: float) -> str:
    """An axis label: 1234567 → 123.5万, 12000 → 1.2万, 950 → 950."""
    if abs(value) >= 10_000:
        return f"{value / 10_000:,.1f}万"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _marker(shape: str, x: float, y: float, colour: str, attrs: str) -> str:
    if shape == "circle":
        return f'<circle {attrs} cx="{x}" cy="{y}" r="4" fill="{colour}"/>'
    if shape == "square":
        return f'<rect {attrs} x="{x - 4}" y="{y - 4}" width="8" height="8" fill="{colour}"/>'
    pts = (f"{x},{y - 5} {x + 5},{y} {x},{y + 5} {x - 5},{y}" if shape == "diamond"
           else f"{x},{y - 5} {x + 5},{y + 4} {x - 5},{y + 4}")
    return f'<polygon {attrs} points="{pts}" fill="{colour}"/>'


def line_chart(xs: list[str], series: list[Series], title: str, desc: str = "", *,
               target: tuple[float, str] | None = None, y_max: float | None = None,
               y_fmt=short_num, empty: str = "暂无数据 / No data") -> Markup:
    """Lines over the ``xs`` labels (e.g. snapshot days), one per series, each with its own
    colour, dash and marker shape and a legend row giving its latest value in words;
    ``target`` (value, label) is a labelled horizontal line. Every point carries a
    ``<title>`` with its exact value. The y axis runs from 0 to ``y_max`` (default: the
    largest value or target, +10 %)."""
    uid = f"c{next(_ids)}"
    t, d = escape(title), escape(desc or title)
    legend_rows = len(series) + (1 if target else 0)
    top = PAD + legend_rows * LEGEND_H + 6
    height = top + LINE_H + 24
    out = [f'<svg class="chart line-chart" role="img" aria-labelledby="{uid}t {uid}d" '
           f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
           f'xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{uid}t">{t}</title><desc id="{uid}d">{d}</desc>']
    if not xs or not series:
        out.append(f'<text class="empty" x="{WIDTH / 2}" y="{height / 2 + 5}" '
                   f'text-anchor="middle">{escape(empty)}</text></svg>')
        return Markup("".join(out))  # noqa: S704 - every interpolated string is escaped
    values = [v for s in series for v in s.values if v is not None]
    hi = y_max if y_max is not None else max([*values, target[0] if target else 0, 0]) * 1.1
    hi = hi if hi > 0 else 1.0
    x0, x1 = AXIS_L, WIDTH - 10
    y0, y1 = top + LINE_H, top

    def px(i: int) -> float:
        return round((x0 + x1) / 2 if len(xs) == 1 else x0 + (x1 - x0) * i / (len(xs) - 1), 1)

    def py(v: float) -> float:
        return round(y0 - (y0 - y1) * max(0.0, min(v, hi)) / hi, 1)

    # axes: 0 and the top value, labelled; x labels under each point
    for v in (0.0, hi / 2, hi):
        out.append(f'<line x1="{x0}" y1="{py(v)}" x2="{x1}" y2="{py(v)}" stroke="#e5e7eb"/>'
                   f'<text class="value axis" x="{x0 - 4}" y="{py(v) + 4}" '
                   f'text-anchor="end">{escape(y_fmt(v))}</text>')
    step = max(1, -(-len(xs) // 6))  # at most ~6 x labels, so they do not overlap
    for i, x in enumerate(xs):
        if i % step == 0 or i == len(xs) - 1:
            out.append(f'<text class="value axis" x="{px(i)}" y="{y0 + 16}" '
                       f'text-anchor="middle">{escape(x)}</text>')
    row = PAD
    if target:
        ty = py(target[0])
        out.append(f'<g class="target"><line x1="{x0}" y1="{ty}" x2="{x1}" y2="{ty}" '
                   f'stroke="#dc2626" stroke-width="2" stroke-dasharray="10 4"/>'
                   f'<line x1="0" y1="{row + 9}" x2="24" y2="{row + 9}" stroke="#dc2626" '
                   f'stroke-width="2" stroke-dasharray="10 4"/>'
                   f'<text class="label" x="30" y="{row + 13}">{escape(target[1])}</text></g>')
        row += LEGEND_H
    for si, s in enumerate(series):
        colour, dash, shape = STYLES[si % len(STYLES)]
        texts = list(s.texts) or [y_fmt(v) if v is not None else "—" for v in s.values]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        pts = [(px(i), py(v)) for i, v in enumerate(s.values) if v is not None]
        last = next((texts[i] for i in range(len(s.values) - 1, -1, -1)
                     if s.values[i] is not None), "—")
        g = [f'<g class="series" data-series="{si}">',
             f'<line x1="0" y1="{row + 9}" x2="24" y2="{row + 9}" stroke="{colour}" '
             f'stroke-width="2"{dash_attr}/>',
             _marker(shape, 12, row + 9, colour, 'class="key"'),
             f'<text class="label" x="30" y="{row + 13}">{escape(s.name)}：'
             f'{escape(last)}</text>']
        if len(pts) > 1:
            g.append(f'<polyline points="{" ".join(f"{x},{y}" for x, y in pts)}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for i, v in enumerate(s.values):
            if v is None:
                continue
            tip = escape(f"{s.name} · {xs[i]}: {texts[i]}")
            g.append(f'<g class="point" data-x="{escape(xs[i])}" data-value="{v:.4f}">'
                     f'<title>{tip}</title>'
                     + _marker(shape, px(i), py(v), colour, 'class="dot"') + '</g>')
        g.append("</g>")
        out.extend(g)
        row += LEGEND_H
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every interpolated string is escaped
