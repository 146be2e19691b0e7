"""Neutral ``Card`` → DingTalk card-platform ``cardParamMap`` (pure).

DingTalk interactive cards are drawn by a template built in the card builder; the API only
fills its variables, and every ``cardParamMap`` value must be a string. We target one *general*
template (``settings`` → ``cardTemplateId``, default ``fieldbot.general``) whose variables are:

- ``title``, ``status``, ``markdown`` (the whole card as markdown, for simple templates);
- ``card``: a JSON string with ``title, subtitle, color, fields[{label,value}], text,
  buttons[{text, style, actionId, params:{action: <signed token>}}], inputs[…], status,
  footer`` that the template iterates over.

A tap calls back with ``cardPrivateData{actionIds:[actionId], params}``; ``params.action`` is
the signed token (verified by the core), other params are form input. A card with ``status`` is
final: buttons and inputs are dropped and the status shown.
"""

from __future__ import annotations

import json
from typing import Any

from cards.markup import inert
from cards.model import Card, Checkbox, DatePicker, Select, TextInput

DEFAULT_TEMPLATE_ID = "fieldbot.general"


def _inputs(card: Card) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for inp in card.inputs:
        if isinstance(inp, Select):
            out.append({"type": "select", "name": inp.name, "label": inp.label,
                        "placeholder": inp.placeholder,
                        "options": [{"value": o.value, "text": o.text} for o in inp.options]})
        elif isinstance(inp, Checkbox):
            out.append({"type": "checkbox", "name": inp.name, "label": inp.label,
                        "checked": inp.checked})
        elif isinstance(inp, DatePicker):
            out.append({"type": "date", "name": inp.name, "label": inp.label,
                        "initial": inp.initial})
        elif isinstance(inp, TextInput):
            out.append({"type": "text", "name": inp.name, "label": inp.label,
                        "placeholder": inp.placeholder, "required": inp.required,
                        "multiline": inp.multiline})
    return out


def render_markdown(card: Card) -> str:
    """DingTalk markdown; every string passes ``inert`` (no links or tags from user text)."""
    lines = [f"### {inert(card.title)}"]
    if card.subtitle:
        lines.append(inert(card.subtitle))
    lines += [f"- **{inert(f.label)}**：{inert(f.value)}" for f in card.fields]
    if card.text:
        lines.append(inert(card.text))
    if card.status:
        lines.append(f"**{inert(card.status)}**")
    if card.footer:
        lines.append(inert(card.footer))
    return "\n\n".join(lines)


def card_json(card: Card) -> dict[str, Any]:
    final = bool(card.status)
    return {
        "title": inert(card.title),
        "subtitle": inert(card.subtitle),
        "color": card.color,
        "fields": [{"label": inert(f.label), "value": inert(f.value)} for f in card.fields],
        "text": inert(card.text),
        "buttons": [] if final else [
            {"text": b.text, "style": b.style, "actionId": f"btn_{i}",
             "params": {"action": b.action}} for i, b in enumerate(card.buttons)],
        "inputs": [] if final else _inputs(card),
        "status": inert(card.status),
        "footer": inert(card.footer),
    }


def render_card(card: Card) -> dict[str, str]:
    """The ``cardParamMap`` (string values only) for create and for update-by-key."""
    return {
        "title": inert(card.title),
        "status": inert(card.status),
        "markdown": render_markdown(card),
        "card": json.dumps(card_json(card), ensure_ascii=False, separators=(",", ":")),
    }


__all__ = ["DEFAULT_TEMPLATE_ID", "card_json", "render_card", "render_markdown"]
