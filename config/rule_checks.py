"""The mistakes a rule set may not contain, collected and refused as ONE pydantic error.

Why one error carrying a list: the schemas (``AlertRules``, ``ApprovalRules``) must refuse a
red threshold below the yellow one, weights not summing to 100 %, a "25:00" time or a zero the
health score divides by wherever rules come from (TOML, the admin console, the chat command),
and an admin who made three mistakes should hear about all three at once (pydantic runs a
model's own validator only once its fields parse). Each problem is
``{"field", "zh", "en", "label"}``: ``field`` is the dotted path inside the model that raised,
``label`` the path whose form label the console puts in front of ``zh`` (None: ``zh`` is a
whole sentence). The console (``webapp.rules_check``) reads them from the error's ``ctx``;
everyone else sees the bilingual summary as the error message.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from pydantic_core import PydanticCustomError

POLICY_ERROR = "rule_policy"  # the pydantic error type; ctx["problems"] holds the list
HHMM = re.compile(r"^([01]?\d|2[0-3]):[0-5]\d$")


def num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _printable(text: str) -> str:
    """Messages quote what was typed; a lone surrogate (JSON allows "\\ud800") cannot be
    encoded, and pydantic could not even show the error: write it as an escape instead."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Problems:
    """What is wrong with one model, in both languages."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, field: str, zh: str, en: str, label: str | None = None) -> None:
        self.items.append({"field": _printable(field), "zh": _printable(zh),
                           "en": _printable(en), "label": label})

    def at_least(self, field: str, value: float, low: float) -> None:
        if value < low:
            self.add(field, f"不能小于 {num(low)}（现在 {num(value)}）",
                     f"must be at least {num(low)} (now {num(value)})", label=field)

    def hhmm(self, field: str, value: str) -> None:
        if not HHMM.match(value):
            self.add(field, f"时间格式应为 HH:MM，00:00–23:59（现在「{value[:20]}」）",
                     f"must be a time HH:MM from 00:00 to 23:59 (now {value[:20]!r})",
                     label=field)

    def timezone(self, field: str, name: str) -> None:
        try:
            ZoneInfo(name)
        except (ValueError, KeyError, OSError):  # unknown key, bad path, "" — all "no such"
            self.add(field, f"时区「{name[:40]}」不存在（例如 Asia/Shanghai）",
                     f"unknown time zone {name[:40]!r} (e.g. Asia/Shanghai)")

    def raise_any(self) -> None:
        if self.items:
            summary = "; ".join((f"{p['field']}: " if p["field"] else "")
                                + f"{p['zh']} / {p['en']}" for p in self.items)
            raise PydanticCustomError(POLICY_ERROR, "{summary}",
                                      {"summary": summary, "problems": self.items})
