"""User text inside the platforms' markdown (Feishu ``markdown``/lark_md, DingTalk markdown):
shown as written, never obeyed. A requester's note like ``[点此快速审批](https://evil…)``,
``<at id=all></at>`` or ``<font color=red>`` must not become a link, a mention of everyone or
markup on an approver's card.

The neutral card text is markdown-lite of our own (``**bold**``, newlines, `` `code` ``), with
no links or tags ever: so the renderers can neutralise every link and tag opener in the whole
string — brackets and angle brackets become their full-width forms (natural in Chinese text)
and a URL scheme gets a zero-width break so no client auto-links it.
"""

from __future__ import annotations

import re

_SWAP = str.maketrans({"[": "［", "]": "］", "<": "＜", ">": "＞"})
_SCHEME = re.compile(r"(?i)\b(https?|ftp|file|lark|feishu|dingtalk|dtmd|wxwork|javascript)"
                     r":(//)?")


def inert(text: str) -> str:
    """``text`` with no link, mention, tag or auto-link a markdown client would act on."""
    if not text:
        return ""
    text = text.translate(_SWAP)
    return _SCHEME.sub(lambda m: m.group(1) + ":\u200b" + (m.group(2) or ""), text)
