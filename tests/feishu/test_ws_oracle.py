"""The oracle: lark-oapi's own ``ws.Client`` (1.7.5), pointed at the fake Feishu (only
``domain`` changed), receives the frames the simulator pushes and acks them the way the
simulator checks — proof the fake speaks the real dialect, endpoint to ack.

1.7.5's client runs on a module-level loop (PROTOCOLS §6), so it gets a thread of its own with
a fresh loop set as ``lark_oapi.ws.client.loop`` before ``start()``; it has no stop, so the
thread is a daemon and the test stops its loop at the end.
"""

from __future__ import annotations

import asyncio
import queue
import threading

import lark_oapi as lark
import lark_oapi.ws.client as lark_ws_client
from aiohttp import web
from aiohttp.test_utils import TestServer
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse

from simulator.core import Recorder
from simulator.feishu import FeishuSim
from tests.feishu.conftest import APP_ID, APP_SECRET, ENCRYPT_KEY, VTOKEN, wait_for


def _run_lark(domain: str, handler, holder: dict) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    lark_ws_client.loop = loop  # the documented work-around for the import-time loop
    holder["loop"] = loop
    client = lark.ws.Client(APP_ID, APP_SECRET, event_handler=handler, domain=domain,
                            log_level=lark.LogLevel.ERROR)
    try:
        client.start()
    except BaseException as exc:  # noqa: BLE001 - the loop is stopped under it at the end
        holder["exit"] = exc


async def test_lark_ws_client_receives_and_acks_the_simulators_frames():
    sim = FeishuSim(Recorder(), APP_ID, APP_SECRET, VTOKEN, ENCRYPT_KEY)
    sim.ws.ack_deadline_s = 1.0
    app = web.Application()
    sim.add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    got: queue.Queue = queue.Queue()

    def on_message(data) -> None:
        got.put(("message", data.header.event_id, data.event.message.message_id))

    def on_card(data) -> P2CardActionTriggerResponse:
        got.put(("card", data.header.event_id, data.event.action.value))
        return P2CardActionTriggerResponse({"toast": {"type": "info", "content": "收到"}})

    handler = (lark.EventDispatcherHandler.builder("", "")
               .register_p2_im_message_receive_v1(on_message)
               .register_p2_card_action_trigger(on_card).build())
    holder: dict = {}
    thread = threading.Thread(target=_run_lark, daemon=True, name="lark-ws-oracle",
                              args=(str(server.make_url("")).rstrip("/"), handler, holder))
    thread.start()
    try:
        await wait_for(lambda: sim.ws.conns, timeout=5)
        assert sim.ws.endpoint_calls == [{"app_id": APP_ID, "ok": True}]
        await wait_for(lambda: sim.ws.pings, timeout=5)  # lark pings at once on connect
        assert sim.ws.pings[0]["ok"]  # with the service_id from the URL

        msg = sim.message_payload("ou_oracle", "text", {"text": "hi"}, event_id="ev-o1",
                                  message_id="om_oracle")
        ack = await sim.ws.push(msg)
        assert ack is not None and ack.valid and ack.code == 200, ack
        assert ack.result is None  # an event handler returns nothing
        assert got.get(timeout=2) == ("message", "ev-o1", "om_oracle")

        sim.ws.fragment_size = 50  # lark reassembles our fragments too
        ack = await sim.ws.push(sim.message_payload("ou_oracle", "text", {"text": "x" * 300},
                                                    event_id="ev-o2"))
        assert ack.valid and ack.code == 200
        assert got.get(timeout=2)[1] == "ev-o2"
        sim.ws.fragment_size = 0

        tap = sim.tap_payload("ou_oracle", {"t": "v1"}, "om_oracle", "c-tok",
                              event_id="ev-o3")
        ack = await sim.ws.push(tap)  # a card tap on an event frame: the toast rides back
        assert ack.valid and ack.code == 200
        assert ack.result == {"toast": {"type": "info", "content": "收到"}}
        assert got.get(timeout=2) == ("card", "ev-o3", {"t": "v1"})

        # the same tap on a ``card`` frame: 1.7.5 drops it without an ack
        # (oapi-sdk-python#126) — the user would see 200340; FeishuWs must not do this
        sim.ws.max_attempts = 1
        assert await sim.ws.push(tap, as_card_frame=True) is None
        assert sim.ws.timed_out == ["ev-o3"]
        assert got.empty()
    finally:
        await asyncio.wait_for(sim.ws.close_all(), 5)  # lark answers the close, then sleeps
        loop = holder.get("loop")
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        await server.close()
