"""Each platform's inbound parsing under arbitrary input (hypothesis): bytes, deeply nested
XML and JSON. Every input either parses or raises one of the exceptions its webhook turns
into a 400 — never anything that would escape as a 500 — and each answer takes ≤ 50 ms."""

from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.dingtalk.parse import is_card_callback, parse_card_callback, parse_robot
from integrations.feishu.parse import envelope, to_event
from integrations.wecom.parse import parse as wecom_parse
from integrations.wecom.safexml import XMLRefused, parse_flat

FAST_S = 0.05
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=5),
    max_leaves=60)
tags = st.sampled_from(["xml", "MsgType", "Content", "Event", "SelectedItems", "SelectedItem",
                        "OptionIds", "OptionId", "MsgId", "FromUserName", "a"])


@st.composite
def nested_xml(draw) -> bytes:
    depth = draw(st.integers(0, 3000))
    tag = draw(tags)
    inner = draw(st.text(max_size=30)).replace("<", "").replace("&", "")
    body = f"<{tag}>" * depth + inner + f"</{tag}>" * draw(st.integers(0, depth))
    return f"<xml>{body}</xml>".encode()


def timed(fn, *args):
    t0 = time.perf_counter()
    try:
        return fn(*args)
    finally:
        assert time.perf_counter() - t0 <= FAST_S, "slower than 50 ms"


def wecom(data: bytes) -> None:
    try:
        raw = timed(parse_flat, data)
    except XMLRefused:
        return
    try:
        timed(wecom_parse, raw, "ww1")
    except (ValueError, TypeError):
        pass


@SETTINGS
@given(st.binary(max_size=4000) | nested_xml())
def test_wecom_xml(data):
    wecom(data)


def dingtalk(raw) -> None:
    try:
        if isinstance(raw, dict) and is_card_callback(raw):
            timed(parse_card_callback, raw, "ding1")
        else:
            timed(parse_robot, raw, "ding1")
    except (ValueError, TypeError, UnicodeDecodeError):
        pass


def feishu(raw) -> None:
    try:
        env = timed(envelope, raw)
        if isinstance(raw, dict):
            timed(to_event, raw, "cli_1")
        assert env is not None
    except ValueError:  # ParseError is a ValueError: the webhook's 400
        pass


@SETTINGS
@given(json_values)
def test_json_platforms(raw):
    dingtalk(raw)
    feishu(raw)


@SETTINGS
@given(st.binary(max_size=2000))
def test_json_platforms_bytes(data):
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return  # the webhooks' 400
    dingtalk(raw)
    feishu(raw)
