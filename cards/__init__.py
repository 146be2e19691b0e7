"""The neutral card model, signed action payloads and pure renderers per platform."""

from cards.model import KV, Button, Card, Checkbox, DatePicker, Option, Select, TextInput
from cards.payload import Action, ForgedAction, pack_action, unpack_action

__all__ = [
    "KV", "Action", "Button", "Card", "Checkbox", "DatePicker", "ForgedAction", "Option",
    "Select", "TextInput", "pack_action", "unpack_action",
]
