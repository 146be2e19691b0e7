"""Hypothesis strategies for hostile inbound payloads: arbitrary bytes, JSON (deep nesting, huge
numbers, NaN/Infinity, unicode, wrong types in the fields a platform's parser reads) and XML
(deep nesting, many elements, DTDs/entities, CDATA, odd encodings). Shared by the HTTP fuzz
(``test_fuzz_http``) and the long-connection frame fuzz (``test_fuzz_frames``)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

LIMIT = 40_000  # characters: with encryption (base64, ×4/3) still under the 64 KB body limit

# -- JSON --------------------------------------------------------------------------------------
awkward = st.sampled_from([float("inf"), float("-inf"), float("nan"), 10**30, -1, 0, 2**63,
                           "", " ", "1e999", "-1", "null", "2", "group", "\u0000", "\ud7ff"])
scalars = (st.none() | st.booleans() | st.integers(-(10**40), 10**40) | awkward
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=5),
    max_leaves=40)


@st.composite
def deep_json(draw) -> bytes:
    """Nesting far past any recursion limit (arrays, objects, or both), maybe unbalanced."""
    depth = draw(st.integers(50, 20_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"x":', "}]")]))
    leaf = draw(st.sampled_from(["1", '"x"', "null", "[]", "{}", ""]))
    closing = draw(st.sampled_from([depth, depth, 0, depth // 2]))
    text = opener * depth + leaf + closer * closing
    if len(text) > LIMIT:  # under the 64 KB body limit: the parser, not the limit, must cope
        text = text[:LIMIT]
    return text.encode()


@st.composite
def huge_numbers(draw) -> bytes:
    """Integers past Python's 4,300-digit str limit, exponents past float range, NaN."""
    digits = draw(st.integers(1, 20_000))
    number = draw(st.sampled_from(["9" * digits, "-" + "1" * digits, f"1e{digits}",
                                   f"-1e-{digits}", "NaN", "Infinity", "-Infinity",
                                   "0." + "0" * digits + "1"]))
    field = draw(st.sampled_from(["createAt", "duration", "create_time", "msgId", "a"]))
    return ('{"' + field + '": ' + number + "}").encode()


JSON_STR = "<json>"  # a path step: the string holds a JSON document (Feishu's content)
DROP = object()
awkward_numbers = st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, 2**64,
                                   -(2**63), -1, 0.5, "12", "x", None, True, [], {}])


def leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """Every leaf's path, through dicts, lists and JSON held in strings."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaves(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaves(v, (*path, i))] or [path]
    if isinstance(value, str) and value.startswith(("{", "[")):
        try:
            return leaves(json.loads(value), (*path, JSON_STR))
        except ValueError:
            pass
    return [path]


def replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    step, rest = path[0], path[1:]
    if step == JSON_STR:
        return json.dumps(replaced(json.loads(value), rest, new), ensure_ascii=False)
    out = dict(value) if isinstance(value, dict) else list(value)
    if new is DROP and not rest:
        del out[step]
    else:
        out[step] = replaced(out[step], rest, new)
    return out


def _at(value: Any, path: tuple) -> Any:
    for step in path:
        value = json.loads(value) if step == JSON_STR else value[step]
    return value


def mutate(base: Any):
    """``base`` with one to three fields swapped for a wrong type, an awkward number (half the
    picks are the numeric fields), arbitrary JSON, or dropped; the rest kept valid, so the
    parser goes as deep as it can. JSON held in strings is mutated inside."""
    paths = leaves(base)
    numeric = [p for p in paths if isinstance(_at(base, p), int | float)] or paths

    @st.composite
    def strategy(draw) -> Any:
        value = base
        for _ in range(draw(st.integers(1, 3))):
            if draw(st.booleans()):
                path, new = draw(st.sampled_from(numeric)), draw(awkward_numbers)
            else:
                path = draw(st.sampled_from(paths))
                new = draw(st.one_of(awkward, json_values, st.just(DROP)))
            if not path and new is DROP:
                continue
            try:
                value = replaced(value, path, new)
            except (KeyError, IndexError, TypeError, ValueError):
                pass  # an earlier pick changed what this path goes through
        return value

    return strategy()


def json_bodies(*bases: Any) -> st.SearchStrategy[bytes]:
    """Request bodies: JSON of arbitrary values, mutated known payloads, deep nesting, huge
    numbers, and raw bytes."""
    valid = [mutate(b).map(lambda v: json.dumps(v, ensure_ascii=False).encode())
             for b in bases]
    return st.one_of(json_values.map(lambda v: json.dumps(v).encode()), *valid, deep_json(),
                     huge_numbers(), st.binary(max_size=2000))


def json_texts(*bases: Any) -> st.SearchStrategy[str]:
    """Plaintexts for an encrypted envelope (the same bodies, as text)."""
    return json_bodies(*bases).map(lambda b: b.decode("utf-8", "replace"))


# -- XML ---------------------------------------------------------------------------------------
TAGS = ["xml", "ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId",
        "Event", "EventKey", "TaskId", "SelectedItems", "SelectedItem", "QuestionKey",
        "OptionIds", "OptionId", "Location_X", "Location_Y", "Latitude", "MediaId", "Encrypt",
        "AgentID", "a"]
tags = st.sampled_from(TAGS)
xml_text = st.text(st.characters(exclude_categories=("Cc", "Cs")) | st.sampled_from("\t\n"),
                   max_size=40).map(  # XML 1.0's characters (control characters are refused)
    lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace("]]>", ""))
odd_values = st.sampled_from(["inf", "-inf", "nan", "1e999", "9" * 5000, "-1", "", " ", "0x10",
                              "event", "template_card_event", "location", "text", "voice",
                              "&amp;", "&#x4e2d;", "<![CDATA[<xml><a>x</a></xml>]]>"])
broken = st.sampled_from(["&#0;", "&#x110000;", "&undefined;", "]]>", "<![CDATA[ unterminated",
                          "<a>", "</a>", "<", "&"])
odd_text = odd_values | broken


def _elements(leaf):
    return st.recursive(
        leaf,
        lambda inner: st.builds(lambda t, kids: f"<{t}>{''.join(kids)}</{t}>", tags,
                                st.lists(inner, max_size=5)),
        max_leaves=30)


well_formed = _elements(st.one_of(xml_text, odd_values, xml_text.map(
    lambda s: f"<![CDATA[{s}]]>")))
elements = _elements(st.one_of(xml_text, odd_text, xml_text.map(lambda s: f"<![CDATA[{s}]]>")))

PROLOGUES = [
    "", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-8"?>',
    '<?xml version="1.0" encoding="gbk"?>', '<?xml version="1.0" encoding="utf-16"?>',
    '<?xml version="1.0" encoding="cp037"?>', '<?xml version="1.0" encoding="no-such"?>',
    '<?xml version="2.0"?>', "\ufeff",
    '<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
    '<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd">',
    '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>',
    '<!DOCTYPE xml [<!ELEMENT xml ANY><!ENTITY u SYSTEM "x" NDATA n>]>',
]


@st.composite
def nested_xml(draw) -> str:
    """Deep nesting (to 5,000 levels) or many siblings (to 3,000) of WeCom's tags."""
    tag = draw(tags)
    inner = draw(elements)[:2000]
    room = LIMIT - len(inner)  # under the 64 KB body limit: the parser, not the limit, copes
    if draw(st.booleans()):
        depth = min(draw(st.integers(10, 5000)), room // (2 * len(tag) + 5))
        body = f"<{tag}>" * depth + inner + f"</{tag}>" * draw(st.sampled_from([depth, 0, 1]))
    else:
        unit = f"<{tag}>{inner}</{tag}>"
        body = unit * min(draw(st.integers(100, 3000)), LIMIT // len(unit))
    return f"<xml>{body}</xml>"


@st.composite
def xml_documents(draw) -> str:
    prologue = draw(st.sampled_from(PROLOGUES))
    body = draw(st.one_of(elements.map(lambda e: f"<xml>{e}</xml>"), nested_xml(),
                          elements.map(lambda e: f"<xml>&b;{e}&x;</xml>"), elements))
    return prologue + body


@st.composite
def xml_bytes(draw) -> bytes:
    """An XML document in some encoding (maybe not the one it declares), or raw bytes."""
    doc = draw(xml_documents())
    codec = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "gbk", "latin-1", "cp037"]))
    return doc.encode(codec, "replace")


def wecom_inner(sim) -> st.SearchStrategy[str]:
    """Decrypted WeCom messages: real ones with fields swapped for hostile XML, and documents
    of any shape."""
    kinds = [("text", {"Content": "hi", "MsgId": "1"}),
             ("location", {"Location_X": "31.2", "Location_Y": "121.4", "Label": "x",
                           "MsgId": "2"}),
             ("voice", {"MediaId": "m", "Format": "amr", "MsgId": "3"}),
             ("event", {"Event": "template_card_event", "EventKey": "tok|a=b", "TaskId": "t"}),
             ("event", {"Event": "LOCATION", "Latitude": "31", "Longitude": "121"})]

    @st.composite
    def mutated(draw) -> str:
        msg_type, fields = draw(st.sampled_from(kinds))
        # mostly well-formed, so the parser, not the XML layer, gets the wrong types
        fields = {k: draw(st.one_of(st.just(v), st.just(v), odd_values, well_formed))
                  for k, v in fields.items()}
        xml = sim.message_xml(draw(st.sampled_from(["zhangsan", "u" * 300])), msg_type, {})
        extra = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
        if draw(st.booleans()):
            extra += draw(well_formed.map(lambda e: f"<SelectedItems>{e}</SelectedItems>"))
        if draw(st.integers(0, 9)) == 0:
            extra += draw(broken)
        return xml.replace("</xml>", extra + "</xml>")

    return st.one_of(mutated(), mutated(), xml_documents(), st.text(max_size=500))
