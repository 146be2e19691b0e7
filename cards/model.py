"""One card model for all platforms; renderers turn it into each platform's JSON.

Buttons carry a *signed* action token (``cards.payload.pack_action``), never a bare value,
so a forged or edited button value is refused on the way back. Inputs (checkbox, select,
date, text) are collected with the tap and arrive as ``Event.action.form``; a surface that
cannot draw an input (WeCom buttons, DingTalk without a template input) degrades: a select
becomes one button per option, a text input is left out and ``Card.fallback_note`` says so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class KV(BaseModel):
    label: str
    value: str


class Button(BaseModel):
    text: str
    action: str  # signed token from pack_action
    style: Literal["primary", "default", "danger"] = "default"


class Option(BaseModel):
    value: str
    text: str


class Checkbox(BaseModel):
    type: Literal["checkbox"] = "checkbox"
    name: str
    label: str
    checked: bool = False


class Select(BaseModel):
    type: Literal["select"] = "select"
    name: str
    label: str
    options: list[Option]
    placeholder: str = ""


class DatePicker(BaseModel):
    type: Literal["date"] = "date"
    name: str
    label: str
    initial: str = ""  # YYYY-MM-DD


class TextInput(BaseModel):
    type: Literal["text"] = "text"
    name: str
    label: str
    placeholder: str = ""
    required: bool = False
    multiline: bool = False  # a few lines (a reason, a note), where the platform can


Input = Checkbox | Select | DatePicker | TextInput


class Card(BaseModel):
    title: str
    subtitle: str = ""
    color: Literal["blue", "green", "orange", "red", "grey"] = "blue"
    fields: list[KV] = Field(default_factory=list)
    text: str = ""  # body paragraph, markdown-lite (bold with **, newlines)
    inputs: list[Input] = Field(default_factory=list)
    buttons: list[Button] = Field(default_factory=list)
    status: str = ""  # when set the card is final: buttons are dropped, status shown
    footer: str = ""
    card_id: str = ""  # stable id for updates (DingTalk outTrackId, WeCom task_id)
