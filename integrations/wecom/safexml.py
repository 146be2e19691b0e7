"""WeCom's flat XML → ``{tag: text}``, on expat with defusedxml's refusals.

Network XML must never declare a DTD or entities (billion laughs, external references). This
parser enforces defusedxml's policy (``forbid_dtd``, ``forbid_entities``, ``forbid_external``,
raising defusedxml's own exceptions) on a bare expat parser and builds the flat dict WeCom's
format needs in the same pass. It is what ``defusedxml.ElementTree.fromstring`` does, without
building a pure-Python ``XMLParser`` and an element tree per call — the two parses of every
callback cost ~60 µs that way, a sixth of the acknowledgement (bench/webhook.py).
"""

from __future__ import annotations

from xml.parsers import expat

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden


class XMLRefused(ValueError):
    """Malformed XML, or XML with a DTD / entity declaration / external reference, or nested
    deeper / holding more elements than any WeCom message does."""


# WeCom's deepest message (a template-card event) is 4 levels and under 100 elements; refusing
# in the start handler keeps the builder's stack, ``_tree``'s recursion and memory bounded.
MAX_DEPTH = 12
MAX_ELEMENTS = 1000


def _forbid_dtd(name, sysid, pubid, _has_internal_subset):
    raise DTDForbidden(name, sysid, pubid)


def _forbid_entity(name, _is_param, _value, base, sysid, pubid, notation_name):
    raise EntitiesForbidden(name, None, base, sysid, pubid, notation_name)


def _forbid_unparsed(name, base, sysid, pubid, notation_name):
    raise EntitiesForbidden(name, None, base, sysid, pubid, notation_name)


def _forbid_external(context, base, sysid, pubid):
    raise ExternalReferenceForbidden(context, base, sysid, pubid)


class _Builder:
    """Element stack of ``[tag, children, text parts]``; the root ends up in ``root``."""

    __slots__ = ("stack", "root", "count")

    def __init__(self):
        self.stack: list[list] = []
        self.root: list | None = None
        self.count = 0

    def start(self, tag, _attrs):
        self.count += 1
        if len(self.stack) >= MAX_DEPTH or self.count > MAX_ELEMENTS:
            raise XMLRefused("too deep" if len(self.stack) >= MAX_DEPTH else "too many elements")
        self.stack.append([tag, [], []])

    def data(self, text):
        if self.stack:
            self.stack[-1][2].append(text)

    def end(self, _tag):
        tag, children, text = node = self.stack.pop()
        node[2] = children if children else "".join(text)
        if self.stack:
            self.stack[-1][1].append((tag, node[2]))
        else:
            self.root = node


def _tree(children: list) -> list:
    """Nested elements as ``[[tag, text | children], …]`` (texts stripped)."""
    return [[tag, _tree(v) if isinstance(v, list) else v.strip()] for tag, v in children]


def parse_flat(data: bytes | str, root_tag: str = "xml") -> dict:
    """``<xml><A>text</A><B><C>..</C></B></xml>`` → ``{"A": "text", "B": [["C", ".."]]}``.

    Leaf texts are stripped except ``Content`` (a user's message, kept as sent). Raises
    ``XMLRefused`` for anything malformed, a DTD, entities, or another root element."""
    b = _Builder()
    p = expat.ParserCreate()
    p.StartDoctypeDeclHandler = _forbid_dtd
    p.EntityDeclHandler = _forbid_entity
    p.UnparsedEntityDeclHandler = _forbid_unparsed
    p.ExternalEntityRefHandler = _forbid_external
    p.buffer_text = True
    p.StartElementHandler = b.start
    p.EndElementHandler = b.end
    p.CharacterDataHandler = b.data
    try:
        p.Parse(data, True)
    except XMLRefused:
        raise
    except (expat.ExpatError, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden,
            ValueError, TypeError, LookupError) as exc:  # LookupError: encoding="no-such"
        raise XMLRefused(exc.__class__.__name__) from exc
    if b.root is None or b.root[0] != root_tag:
        raise XMLRefused("bad xml root")
    out: dict = {}
    for tag, value in b.root[1] if isinstance(b.root[1], list) else ():
        if isinstance(value, list):
            out[tag] = _tree(value)
        else:
            out[tag] = value if tag == "Content" else value.strip()
    return out
