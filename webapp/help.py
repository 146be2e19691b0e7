"""Help pages of the mini-app: ``/app/help/measures`` shows ``docs/measures.md`` (how every
figure is computed) as HTML. A tiny markdown subset (``#``/``##`` headings, ``- `` list items,
paragraphs, ``**bold**`` and ``code``); the text is escaped before any markup is added."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web
from markupsafe import Markup, escape

from webapp.auth import require
from webapp.render import error_page, render

routes = web.RouteTableDef()
MEASURES = Path(__file__).resolve().parent.parent / "docs" / "measures.md"


def _inline(text: str) -> str:
    s = str(escape(text))
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


def markdown_html(text: str) -> Markup:
    """The markdown subset above as HTML; every character of ``text`` escaped first."""
    out: list[str] = []
    in_list = False
    for line in text.splitlines():
        line = line.rstrip()
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("## "):
            out.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line:
            out.append(f"<p>{_inline(line)}</p>")
    if in_list:
        out.append("</ul>")
    return Markup("\n".join(out))  # noqa: S704 - built from escaped text only


@routes.get("/app/help/measures")
@require()
async def measures(request: web.Request) -> web.StreamResponse:
    try:
        text = MEASURES.read_text(encoding="utf-8")
    except OSError:
        return error_page(request, 404, "口径说明缺失 / The measures page is missing.")
    return render(request, "help_measures.html", body=markdown_html(text))
