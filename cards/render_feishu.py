"""Neutral ``Card`` → Feishu card JSON 2.0 (pure).

Buttons are ``callback`` behaviours whose value is ``{"t": <signed token>}``; the webhook reads
it back from ``event.action.value``. With inputs, the inputs and the buttons sit in one
``form`` so a tap submits them (``event.action.form_value``). A card with ``status`` is final:
no inputs, no buttons, the status is shown instead. ``update_multi`` makes the card shared, so
an update shows for everyone who sees it (required for delayed updates).
"""

from __future__ import annotations

from typing import Any

from cards.markup import inert
from cards.model import Button, Card, Checkbox, DatePicker, Select, TextInput

TEMPLATES = {"blue": "blue", "green": "green", "orange": "orange", "red": "red", "grey": "grey"}
BUTTON_TYPES = {"primary": "primary_filled", "danger": "danger_filled", "default": "default"}


def _plain(text: str) -> dict[str, str]:
    return {"tag": "plain_text", "content": text}


def _button(button: Button, index: int, in_form: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tag": "button",
        "name": f"btn_{index}",
        "text": _plain(button.text),
        "type": BUTTON_TYPES[button.style],
        "behaviors": [{"type": "callback", "value": {"t": button.action}}],
    }
    if in_form:
        out["form_action_type"] = "submit"
    return out


def _input(inp) -> dict[str, Any]:
    if isinstance(inp, Checkbox):
        return {"tag": "checker", "name": inp.name, "checked": inp.checked,
                "text": _plain(inp.label)}
    if isinstance(inp, Select):
        out: dict[str, Any] = {
            "tag": "select_static", "name": inp.name,
            "placeholder": _plain(inp.placeholder or inp.label),
            "options": [{"text": _plain(o.text), "value": o.value} for o in inp.options]}
        return out
    if isinstance(inp, DatePicker):
        out = {"tag": "date_picker", "name": inp.name, "placeholder": _plain(inp.label)}
        if inp.initial:
            out["initial_date"] = inp.initial
        return out
    if isinstance(inp, TextInput):
        out = {"tag": "input", "name": inp.name, "label": _plain(inp.label),
               "placeholder": _plain(inp.placeholder or inp.label), "required": inp.required}
        if inp.multiline:
            out.update(input_type="multiline_text", rows=3)
        return out
    raise TypeError(f"unknown input {type(inp).__name__}")


def _button_row(buttons: list[Button], in_form: bool) -> list[dict[str, Any]]:
    if len(buttons) == 1:
        return [_button(buttons[0], 0, in_form)]
    return [{"tag": "column_set", "horizontal_spacing": "8px",
             "columns": [{"tag": "column", "width": "auto",
                          "elements": [_button(b, i, in_form)]}
                         for i, b in enumerate(buttons)]}]


def render_feishu(card: Card) -> dict[str, Any]:
    header: dict[str, Any] = {"title": _plain(card.title),
                              "template": TEMPLATES.get(card.color, "blue")}
    if card.subtitle:
        header["subtitle"] = _plain(card.subtitle)
    elements: list[dict[str, Any]] = []
    if card.fields:
        elements.append({"tag": "markdown", "content": "\n".join(
            f"**{inert(f.label)}**：{inert(f.value)}" for f in card.fields)})
    if card.text:
        elements.append({"tag": "markdown", "content": inert(card.text)})
    if card.status:
        elements.append({"tag": "markdown", "content": f"**{inert(card.status)}**"})
    elif card.inputs:
        form = [_input(i) for i in card.inputs] + _button_row(card.buttons, in_form=True) \
            if card.buttons else [_input(i) for i in card.inputs]
        elements.append({"tag": "form", "name": "form_0", "elements": form})
    elif card.buttons:
        elements += _button_row(card.buttons, in_form=False)
    if card.footer:
        elements.append({"tag": "markdown", "content": inert(card.footer),
                         "text_size": "notation"})
    return {"schema": "2.0", "config": {"update_multi": True}, "header": header,
            "body": {"elements": elements}}
