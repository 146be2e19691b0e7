"""Pure pieces without a server: crypto, parser, simulator rules, client error mapping."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.platform import PermanentError, RateLimited, TransientError
from integrations.wecom.client import WeComClient, _error
from integrations.wecom.crypto import CryptoError, SignatureError, WeComCrypto, parse_xml
from integrations.wecom.parse import parse
from simulator.core import Recorder
from simulator.wecom import WeComSim
from tests.wecom.conftest import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN


@pytest.fixture
def sim():
    return WeComSim(Recorder(), CORP_ID, AGENT_ID, SECRET, TOKEN, AES_KEY)


def test_sdk_round_trip_and_tamper(sim):
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP_ID)
    xml = sim.message_xml("u1", "text", {"Content": "  spaced <ok> ", "MsgId": "5"})
    query, body = sim.sign_callback(xml)
    raw = crypto.open_envelope(body, query["msg_signature"], query["timestamp"], query["nonce"])
    assert raw["Content"] == "  spaced <ok> "
    with pytest.raises(SignatureError):
        crypto.open_envelope(body, query["msg_signature"], str(int(query["timestamp"]) + 1),
                             query["nonce"])
    sealed = crypto.seal("<xml><A>1</A></xml>", timestamp="1", nonce="2")
    assert crypto.decrypt(sealed["Encrypt"]) == "<xml><A>1</A></xml>"
    assert crypto.verify(sealed["MsgSignature"], "1", "2", sealed["Encrypt"])


def test_parse_xml_refuses_dtd():
    with pytest.raises(CryptoError):
        parse_xml(b'<!DOCTYPE x [<!ENTITY e "x">]><xml><A>&e;</A></xml>')
    with pytest.raises(CryptoError):
        parse_xml(b"<notxml>")
    with pytest.raises(CryptoError):
        parse_xml(b"<other/>")


def test_parse_card_event_with_selected_items(sim):
    xml = sim.message_xml("u2", "event", {
        "Event": "template_card_event", "EventKey": "tok.mac|outcome=won", "TaskId": "t1",
        "CardType": "button_interaction", "ResponseCode": "rc1"}, create_time=1700000000)
    xml = xml.replace("</xml>", "<SelectedItems><SelectedItem><QuestionKey>cust</QuestionKey>"
                      "<OptionIds><OptionId>c3</OptionId></OptionIds></SelectedItem>"
                      "<SelectedItem><QuestionKey>tags</QuestionKey><OptionIds>"
                      "<OptionId>a</OptionId><OptionId>b</OptionId></OptionIds></SelectedItem>"
                      "</SelectedItems></xml>")
    ev = parse(parse_xml(xml), CORP_ID)
    assert ev.kind == "card_action" and ev.sender == "u2" and ev.chat.type == "p2p"
    assert ev.action.value == "tok.mac"
    assert ev.action.form == {"outcome": "won", "cust": "c3", "tags": ["a", "b"]}
    assert ev.action.card_ref["response_code"] == "rc1"
    assert ev.action.card_ref["task_id"] == "t1"
    assert ev.event_id.startswith("u2:1700000000:template_card_event:")
    ev.model_dump_json()  # storable


def test_parse_event_ids(sim):
    a = parse(parse_xml(sim.message_xml("u", "event", {"Event": "enter_agent"},
                                        create_time=1)), CORP_ID)
    b = parse(parse_xml(sim.message_xml("u", "event", {"Event": "enter_agent"},
                                        create_time=2)), CORP_ID)
    assert a.kind == "system" and a.event_id != b.event_id
    assert parse(parse_xml(sim.message_xml("u", "event", {"Event": "zzz"})), CORP_ID) is None
    with pytest.raises(ValueError):
        parse({"MsgType": "text"}, CORP_ID)


def test_error_mapping():
    assert isinstance(_error(45033, {}, "x"), RateLimited)
    assert isinstance(_error(45009, {}, "x"), RateLimited)
    assert isinstance(_error(-1, {}, "x"), TransientError)
    assert isinstance(_error(60020, {}, "x"), PermanentError)


async def test_sim_duplicate_check_and_member_limit(sim):
    app = web.Application()
    sim.add_routes(app)
    sim.limit.n = 3
    import aiohttp

    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as http:
        client = WeComClient(http, str(server.make_url("")), CORP_ID, SECRET, AGENT_ID)
        first = await client.send_text("u", "same")
        again = await client.send("u", "text", {"content": "same"}, resend=True)
        assert first == again and len(sim.sent("u")) == 1  # the resend was dropped
        await client.send_text("u", "two")
        await client.send_text("u", "two")  # a genuine repeat (no check asked) is delivered
        sim.limit.n = 4
        await client.send_text("u", "three")
        with pytest.raises(RateLimited):
            await client.send_text("u", "four")
        await client.send_text("v", "other member")
        assert len(sim.sent()) == 5
        bad = WeComClient(http, str(server.make_url("")), CORP_ID, "wrong", AGENT_ID)
        with pytest.raises(PermanentError):
            await bad.send_text("u", "x")
        res = await client.send_card("w", {"card_type": "button_interaction", "task_id": "t9",
                                           "main_title": {"title": "x"}, "button_list": []})
        code = res["response_code"]
        await client.update_card(["w"], code, {"button": {"replace_name": "done"}})
        with pytest.raises(PermanentError):
            await client.update_card(["w"], code, {"button": {"replace_name": "again"}})
        assert len(sim.recorder.of("wecom", "token")) == 2  # one per client (incl. the bad)
