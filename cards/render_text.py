"""Plain-text rendering: the fallback for any surface that cannot draw a card."""

from __future__ import annotations

from cards.model import Card, Checkbox, DatePicker, Select, TextInput


def render_text(card: Card) -> str:
    lines = [f"【{card.title}】"]
    if card.subtitle:
        lines.append(card.subtitle)
    lines += [f"{f.label}：{f.value}" for f in card.fields]
    if card.text:
        lines.append(card.text.replace("**", ""))
    if card.status:
        lines.append(card.status)
    else:
        for inp in card.inputs:
            if isinstance(inp, Select):
                lines.append(f"{inp.label}：" + " / ".join(o.text for o in inp.options))
            elif isinstance(inp, Checkbox | DatePicker | TextInput):
                lines.append(f"[{inp.label}]")
        if card.buttons:
            lines.append("  ".join(f"[{b.text}]" for b in card.buttons))
    if card.footer:
        lines.append(card.footer)
    return "\n".join(lines)
