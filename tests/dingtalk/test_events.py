"""The encrypted event-subscription endpoint: official vector, URL check, hostile input."""

from __future__ import annotations

import json

from simulator.dingtalk import DingTalkSim
from tests.dingtalk.conftest import Env

VECTOR_QUERY = {"signature": "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0",
                "timestamp": "1445827045067", "nonce": "nEXhMP4r"}
VECTOR_ENCRYPT = (
    "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRW"
    "VdUBmfxjZ8Ej23JVYa9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgn"
    "NOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ=="
)


# -- official vector through the real endpoint ------------------------------------------------
async def test_check_create_suite_url_vector(env_noreplay: Env):
    env = env_noreplay
    body = json.dumps({"encrypt": VECTOR_ENCRYPT}).encode()
    status, text = await env.sim.post_event(env.events_url, VECTOR_QUERY, body)
    assert status == 200
    answer = json.loads(text)
    assert set(answer) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    assert env.sim.open_answer(text) == "success"
    # the same vector with the alternative query spelling
    q = {"msg_signature": VECTOR_QUERY["signature"], "timeStamp": VECTOR_QUERY["timestamp"],
         "nonce": VECTOR_QUERY["nonce"]}
    status, text = await env.sim.post_event(env.events_url, q, body)
    assert status == 200 and env.sim.open_answer(text) == "success"
    assert env.count("inbox_events") == 0


async def test_vector_is_stale_with_replay_window(env: Env):
    body = json.dumps({"encrypt": VECTOR_ENCRYPT}).encode()
    status, _ = await env.sim.post_event(env.events_url, VECTOR_QUERY, body)
    assert status == 401


async def test_check_url_from_simulator(env: Env):
    status, text = await env.sim.check_url(env.events_url)
    assert status == 200
    assert env.sim.open_answer(text) == "success"


async def test_event_forged_signature_and_malformed(env: Env):
    query, body = env.sim.seal_event({"EventType": "check_url"})
    bad = dict(query, msg_signature="0" * 40)
    assert (await env.sim.post_event(env.events_url, bad, body))[0] == 401
    assert (await env.sim.post_event(env.events_url, {}, body))[0] == 401
    assert (await env.sim.post_event(env.events_url, query, b"{not json"))[0] == 400
    assert (await env.sim.post_event(env.events_url, query, b'{"nope": 1}'))[0] == 400
    # signed for another owner key (a corp id instead of the app key)
    other = DingTalkSim(env.recorder, "dingcorpid", "s", "r", env.sim.token, env.sim.aes_key)
    q, b = other.seal_event({"EventType": "check_url"})
    assert (await env.sim.post_event(env.events_url, q, b))[0] == 400


async def test_unknown_event_is_acked(env: Env):
    status, text = await env.sim.send_event(env.events_url, {"EventType": "user_add_org",
                                                             "UserId": ["u1"]})
    assert status == 200
    assert env.sim.open_answer(text) == "success"
    assert env.count("inbox_events") == 0


