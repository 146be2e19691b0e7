"""Neutral ``Card`` → WeCom app ``template_card`` (``button_interaction``); pure.

Layout: ``main_title`` (title/subtitle), ``horizontal_content_list`` (fields, ≤ 6; the rest go
into the body), ``sub_title_text`` (body text, status, footer, notes), ``button_list`` (≤ 6,
each ``key`` = the signed action token, ≤ 1024 bytes).

Inputs: WeCom buttons cannot carry input, so, as ``cards.model`` says, a ``Select`` becomes one
button per option when they fit (key ``<token of the first button>|<name>=<value>``, the
suffix comes back as form input; the token is what is verified), otherwise the first select is
drawn as the card's native dropdown (``button_selection``, answered in ``SelectedItems``).
Checkboxes, dates and text inputs cannot be drawn: they are left out and a note says so.

A final card (``status`` set) has no buttons. Updating a tapped card: ``render_update`` gives
``{"template_card": …}`` with the whole new card (for a final one a ``text_notice`` with the
outcome as its emphasis: the body — an approval chain — is redrawn, not left stale).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote, unquote

from cards.model import Card, Checkbox, DatePicker, Select, TextInput

MAX_BUTTONS = 6
MAX_FIELDS = 6
MAX_OPTIONS = 10
MAX_KEY_BYTES = 1024
MAX_TASK_ID = 128
TITLE_CHARS = 36
DESC_CHARS = 44
SUB_TITLE_CHARS = 512
KEYNAME_CHARS = 10
VALUE_CHARS = 30
BUTTON_CHARS = 10
REPLACE_NAME_CHARS = 14
STYLE = {"primary": 1, "default": 2, "danger": 3}
_TASK_OK = re.compile(r"[^A-Za-z0-9_\-@]")


def _cut(text: str, n: int) -> str:
    text = text or ""
    return text if len(text) <= n else text[: n - 1] + "…"


_BREAKS = " ，,、；;：:（("


def _fit(text: str, n: int) -> str:
    """``text`` within WeCom's ``n`` characters without a cut word: a bilingual label
    ("客户 / Customer") keeps its Chinese half; otherwise it ends at the last space or
    punctuation that fits, with "…" (a plain cut only when there is none)."""
    text = (text or "").strip()
    if len(text) <= n:
        return text
    if " / " in text:
        first = text.split(" / ", 1)[0].strip()
        if first:
            return _fit(first, n)
    head = text[: n - 1]
    cut = max(head.rfind(c) for c in _BREAKS)
    if cut >= max(2, n // 3):
        head = head[:cut]
    return head.rstrip(" ，,、；;：:（(") + "…"


def task_id_for(seed: str) -> str:
    """A valid task_id (letters, digits, ``_-@``, ≤ 128 B) that is stable for one seed."""
    clean = _TASK_OK.sub("_", seed)
    if clean and len(clean) <= 64:
        return clean
    return "t" + hashlib.sha256(seed.encode()).hexdigest()[:40]


def _option_key(token: str, name: str, value: str) -> str:
    return f"{token}|{quote(name, safe='')}={quote(value, safe='')}"


def split_key(key: str) -> tuple[str, dict[str, str]]:
    """A tapped button's key → (signed token, the form input an option button carries): the
    inverse of ``_option_key``, for both WeCom transports (the app's callback, the AI bot)."""
    token, sep, rest = key.partition("|")
    form: dict[str, str] = {}
    if sep and "=" in rest:
        name, _, value = rest.partition("=")
        form[unquote(name)] = unquote(value)
    return token, form


def _buttons(card: Card) -> tuple[list[dict], dict | None, list[str]]:
    """(button_list, button_selection, notes about inputs that could not be drawn)."""
    notes: list[str] = []
    buttons: list[dict] = []
    selection: dict | None = None
    rest = list(card.buttons)
    selects = [i for i in card.inputs if isinstance(i, Select)]
    for inp in card.inputs:
        if isinstance(inp, Checkbox | DatePicker | TextInput):
            notes.append(f"（{inp.label}：请在其他端填写 / not available on WeCom）")
    if selects and rest:
        carrier = rest.pop(0)  # the submit button: its token carries each option
        for sel in selects:
            opts = [o for o in sel.options
                    if len(_option_key(carrier.action, sel.name, o.value).encode())
                    <= MAX_KEY_BYTES]
            room = MAX_BUTTONS - len(buttons) - len(rest)
            if opts and len(opts) <= room:
                buttons += [{"text": _cut(o.text, BUTTON_CHARS), "style": STYLE[carrier.style],
                             "key": _option_key(carrier.action, sel.name, o.value)}
                            for o in opts]
            elif selection is None and len(sel.name.encode()) <= MAX_KEY_BYTES:
                selection = {"question_key": sel.name, "title": _cut(sel.label, 10),
                             "option_list": [{"id": o.value[:128], "text": _cut(o.text, 16)}
                                             for o in sel.options[:MAX_OPTIONS]]}
                if selection["option_list"]:
                    selection["selected_id"] = selection["option_list"][0]["id"]
                if len(sel.options) > MAX_OPTIONS:
                    notes.append(f"（{sel.label}：仅显示前 {MAX_OPTIONS} 项 / first "
                                 f"{MAX_OPTIONS} options shown）")
                buttons.insert(0, {"text": _cut(carrier.text, BUTTON_CHARS),
                                   "style": STYLE[carrier.style], "key": carrier.action})
            else:
                notes.append(f"（{sel.label}：选项过多，无法显示 / too many options）")
    elif selects:
        notes += [f"（{s.label}：请在其他端填写 / not available on WeCom）" for s in selects]
    for b in rest:
        if len(buttons) >= MAX_BUTTONS:
            break
        if len(b.action.encode()) > MAX_KEY_BYTES:
            continue
        buttons.append({"text": _fit(b.text, BUTTON_CHARS), "style": STYLE[b.style],
                        "key": b.action})
    return buttons, selection, notes


def render_card(card: Card, task_id: str) -> dict[str, Any]:
    """The ``template_card`` object of ``message/send`` / ``update_template_card``."""
    body: list[str] = []
    fields = card.fields[:MAX_FIELDS]
    overflow = card.fields[MAX_FIELDS:]
    body += [f"{f.label}：{f.value}" for f in overflow]
    if card.text:
        body.append(card.text.replace("**", "").replace("`", ""))  # plain text here
    tpl: dict[str, Any] = {
        "card_type": "button_interaction",
        "main_title": {"title": _fit(card.title, TITLE_CHARS)},
        "task_id": task_id_for(card.card_id or task_id),
    }
    if card.subtitle:
        tpl["main_title"]["desc"] = _fit(card.subtitle, DESC_CHARS)
    if fields:
        tpl["horizontal_content_list"] = [
            {"keyname": _fit(f.label, KEYNAME_CHARS), "value": _fit(f.value, VALUE_CHARS)}
            for f in fields]
    if card.status:
        body.append(f"状态 / Status：{card.status}")
        tpl["card_type"] = "text_notice"
        tpl["emphasis_content"] = {"title": _fit(card.status, TITLE_CHARS)}
    else:
        buttons, selection, notes = _buttons(card)
        body += notes
        if selection:
            tpl["button_selection"] = selection
        if buttons:
            tpl["button_list"] = buttons
        else:
            tpl["card_type"] = "text_notice"
    if card.footer:
        body.append(card.footer)
    if body:
        tpl["sub_title_text"] = _cut("\n".join(body), SUB_TITLE_CHARS)
    return tpl


def render_update(card: Card, task_id: str) -> dict[str, Any]:
    """The variable part of ``update_template_card`` for a tapped card: always the whole new
    card ("可回调的卡片可以更新成任何一种模板卡片"), so a final card shows its outcome and
    the true state of everything on it (an approval chain after each step), its buttons
    gone. (``button.replace_name`` would only grey the buttons and keep the stale body.)"""
    return {"template_card": render_card(card, task_id)}
