"""The expat parser with defusedxml's refusals: same output as defusedxml's ElementTree on
WeCom's documents, and every DTD / entity / external reference refused before it expands."""

from __future__ import annotations

import gc
import time

import defusedxml.ElementTree as SafeET
import pytest

from integrations.wecom.safexml import XMLRefused, parse_flat


def reference(data: bytes) -> dict:
    """What the parser replaced: defusedxml's ElementTree, flattened the same way."""
    root = SafeET.fromstring(data, forbid_dtd=True)
    assert root.tag == "xml"

    def tree(node):
        return [[c.tag, tree(c) if len(c) else (c.text or "").strip()] for c in node]

    return {c.tag: tree(c) if len(c) else ((c.text or "") if c.tag == "Content"
                                           else (c.text or "").strip()) for c in root}


DOCS = [
    b"<xml><ToUserName><![CDATA[ww1]]></ToUserName><Content><![CDATA[  \xe4\xbd\xa0\xe5\xa5\xbd"
    b" <b>&amp; ]]></Content><MsgId>1</MsgId><Empty/></xml>",
    b"<?xml version='1.0' encoding='utf-8'?>\n<xml>\n  <A> padded </A>\n  <Content>a &lt; b"
    b" &#x4e2d;</Content>\n</xml>",
    b"<xml><Event>template_card_event</Event><SelectedItems><SelectedItem><QuestionKey>q"
    b"</QuestionKey><OptionIds><OptionId>a</OptionId><OptionId> b </OptionId></OptionIds>"
    b"</SelectedItem><SelectedItem><QuestionKey>r</QuestionKey><OptionIds/></SelectedItem>"
    b"</SelectedItems><!-- a comment --><Tail>x</Tail></xml>",
    b'<xml attr="1"><A x="y">t<!-- c -->u</A><A>second wins</A></xml>',
    "<?xml version='1.0' encoding='UTF-16'?><xml><Content>中文</Content></xml>"
    .encode("utf-16"),
]


@pytest.mark.parametrize("doc", DOCS)
def test_same_result_as_defusedxml(doc):
    assert parse_flat(doc) == reference(doc)


@pytest.mark.parametrize("doc", [
    b'<!DOCTYPE xml [<!ENTITY e "x">]><xml><A>&e;</A></xml>',
    b"<!DOCTYPE xml><xml><A>1</A></xml>",
    b'<!DOCTYPE xml SYSTEM "http://169.254.169.254/x.dtd"><xml/>',
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">'
    b']><xml><A>&lol2;</A></xml>',
    "<!DOCTYPE xml [<!ENTITY e 'x'>]><xml><A>&e;</A></xml>".encode("utf-16"),
    b"<xml><A>&undefined;</A></xml>",
    b"<xml><A>1</A>",
    b"<other><A>1</A></other>",
    b"",
    b"\xff\xfe garbage",
    b"<xml><A>1</A></xml><xml/>",
    b'<?xml version="1.0" encoding="no-such"?><xml/>',  # expat's LookupError: was a 500
    b'<?xml version="1.0" encoding="gbk"?><xml/>',  # multi-byte: expat cannot
])
def test_refused(doc):
    with pytest.raises(XMLRefused):
        parse_flat(doc)


def test_billion_laughs_refused_before_expanding():
    levels = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    doc = f'<!DOCTYPE xml [<!ENTITY l0 "lol">{levels}]><xml><A>&l9;</A></xml>'.encode()
    gc.disable()  # time the parser, not a collection of the suite's heap
    try:
        t0 = time.perf_counter()
        with pytest.raises(XMLRefused):
            parse_flat(doc)
        took = time.perf_counter() - t0
    finally:
        gc.enable()
    assert took < 0.1  # refused at the declaration: 10^9 "lol"s are never built


@pytest.mark.parametrize("doc", [
    b"<xml>" + b"<a>" * 5000 + b"x" + b"</a>" * 5000 + b"</xml>",  # RecursionError before
    b"<xml>" + b"<a>" * 13 + b"</a>" * 13 + b"</xml>",
    b"<xml>" + b"<a/>" * 5000 + b"</xml>",
    b"<xml>" + b"<a>" * 5000,  # never closed: refused at the depth limit, not at the end
])
def test_too_deep_or_too_many_elements_refused(doc):
    with pytest.raises(XMLRefused):
        parse_flat(doc)


def test_deepest_wecom_shape_still_parses():
    doc = (b"<xml><Event>template_card_event</Event><SelectedItems><SelectedItem>"
           b"<OptionIds><OptionId>a</OptionId></OptionIds></SelectedItem></SelectedItems>"
           + b"<M>1</M>" * 200 + b"</xml>")
    assert parse_flat(doc)["SelectedItems"] == [["SelectedItem", [["OptionIds",
                                                                    [["OptionId", "a"]]]]]]
