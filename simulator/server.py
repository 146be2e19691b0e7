"""The combined platform simulator: fake WeCom, DingTalk and Feishu APIs on one loopback port.

``Simulator`` mounts the three fakes (``simulator.wecom`` / ``dingtalk`` / ``feishu``) on one
aiohttp app sharing one ``Recorder``; the bot's ``FIELDBOT_<P>_API_BASE`` point at its origin
(``settings_overrides()``). It also serves the demo web chat page at ``/`` and its JSON API:

- ``GET  /demo/api/people`` → the seeded people and the platforms the simulator runs;
- ``POST /demo/api/say {platform, user, text}`` (or ``kind: "voice" | "image"`` with a
  ``sample`` id, or the browser's own file / recording as base64 ``data`` + ``mime`` +
  ``seconds``; or ``kind: "location"`` with ``lat``, ``lng``, ``label`` on WeCom and Feishu)
  → the simulator builds the platform's real signed/encrypted callback (the
  media waits in the fake's store for the bot to download) and posts it to the bot;
- ``GET  /demo/api/messages?platform&user`` → what the bot sent that person, read back from
  the Recorder and normalised (text, markdown, cards; card updates replace the card);
- ``POST /demo/api/tap {platform, user, card, button}`` → the platform's card-tap callback.

``python -m simulator.server`` runs it alone and prints the env vars that point a bot at it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import html
import importlib
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from simulator.core import Call, Recorder
from simulator.seed import PLATFORMS, find_person, people_json

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"

# Fixed demo credentials (they only ever meet the simulator on loopback).
CREDENTIALS: dict[str, dict[str, str]] = {
    "wecom": {"corp_id": "wwdemo0000000001", "agent_id": "1000002",
              "secret": "demo-wecom-secret", "token": "demoWeComToken",
              "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"},
    "dingtalk": {"app_key": "dingdemoappkey0001", "app_secret": "demo-dingtalk-secret",
                 "robot_code": "dingdemoappkey0001", "token": "demoDingToken",
                 "aes_key": "HIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx"},
    "feishu": {"app_id": "cli_demo0000000001", "app_secret": "demo-feishu-secret",
               "verification_token": "demoFeishuVerificationToken",
               "encrypt_key": "demoFeishuEncryptKey"},
}
# --transport stream: WeCom is the AI bot (智能机器人) over its long connection
AIBOT_CREDENTIALS = {"bot_id": "aibotdemo0000000001", "secret": "demo-aibot-secret"}
SIM_CLASSES = {"wecom": "WeComSim", "dingtalk": "DingTalkSim", "feishu": "FeishuSim"}
FEISHU_PATH = "/webhooks/feishu"
APP_ID_FIELD = {"wecom": "corp_id", "dingtalk": "app_key", "feishu": "app_id"}


# -- demo media ----------------------------------------------------------------------------------
SAMPLES = STATIC / "samples"  # storefront photos and a voice note (scripts/make_demo_samples.py)
MAX_UPLOAD = 10 * 1024 * 1024


def samples() -> dict[str, list[dict]]:
    """``{"photos": [{id, file, name}], "voice": [{id, amr, ogg, seconds, text}]}``."""
    try:
        return json.loads((SAMPLES / "samples.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"photos": [], "voice": []}


def _sample(kind: str, sample_id: str) -> dict:
    items = samples()["voice" if kind == "voice" else "photos"]
    for item in items:
        if item["id"] == sample_id or not sample_id:
            return item
    raise web.HTTPBadRequest(text=f"no sample {sample_id!r}")


def media_input(kind: str, data: dict, platform: str) -> tuple[bytes, str, int, str]:
    """(bytes, content type, seconds, what the user bubble says) of a voice note or photo:
    the browser's own file or recording (``data``: base64, ``mime``, ``seconds``, ``name``)
    or a sample (``sample``: its id; default the first)."""
    if data.get("data"):
        raw = str(data["data"])
        if len(raw) > MAX_UPLOAD * 4 // 3 + 4:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=len(raw))
        try:
            body = base64.b64decode(raw, validate=True)
        except ValueError as exc:
            raise web.HTTPBadRequest(text="data must be base64") from exc
        if not body:
            raise web.HTTPBadRequest(text="empty file")
        mime = str(data.get("mime") or "application/octet-stream")[:100]
        try:
            seconds = max(0, min(600, round(float(data.get("seconds") or 0))))
        except (TypeError, ValueError):
            seconds = 0
        name = str(data.get("name") or ("录音" if kind == "voice" else "照片"))[:60]
        what = f"🎤 {name}" + (f" {seconds} 秒" if seconds else "") if kind == "voice" \
            else f"📷 {name}"
        return body, mime, seconds, what
    item = _sample(kind, str(data.get("sample") or ""))
    if kind == "voice":
        fn = item["ogg"] if platform == "feishu" else item["amr"]
        mime = "audio/ogg" if platform == "feishu" else "audio/amr"
        return ((SAMPLES / fn).read_bytes(), mime, int(item["seconds"]),
                f"🎤 示例语音 {item['seconds']} 秒：{item['text']}")
    return ((SAMPLES / item["file"]).read_bytes(), "image/jpeg", 0,
            f"📷 示例照片：{item['name']} 门头")


def _load_fake(platform: str):
    """The fake's class, or None while its module is missing or broken (logged)."""
    try:
        module = importlib.import_module(f"simulator.{platform}")
        return getattr(module, SIM_CLASSES[platform])
    except (ImportError, AttributeError) as exc:
        log.warning("simulator: %s fake unavailable (%s)", platform, exc)
        return None


class Simulator:
    """One loopback aiohttp app with the three fakes, a shared Recorder and the demo API."""

    def __init__(self, platforms: tuple[str, ...] = PLATFORMS, host: str = "127.0.0.1",
                 credentials: dict[str, dict[str, str]] | None = None, aibot: bool = False):
        """``aibot``: the page's WeCom is the AI bot over its long connection (the self-built
        app has none), for ``fieldbot demo --transport stream``."""
        self.host = host
        self.recorder = Recorder()
        self.aibot = aibot and "wecom" in platforms
        self.credentials = {p: dict((credentials or CREDENTIALS)[p]) for p in platforms}
        self.fakes: dict[str, Any] = {}
        for p in platforms:
            if p == "wecom" and self.aibot:
                from simulator.wecom_aibot import WeComAibotSim

                self.credentials[p] = dict(AIBOT_CREDENTIALS)
                self.fakes[p] = WeComAibotSim(self.recorder, **self.credentials[p])
                continue
            cls = _load_fake(p)
            if cls is not None:
                self.fakes[p] = cls(self.recorder, **self.credentials[p])
        self.bot_url: str | None = None  # origin of the bot the demo API posts callbacks to
        self.bot_platforms: list[str] | None = None  # what that bot mounts (None: all)
        self.app = web.Application(client_max_size=MAX_UPLOAD * 2)  # base64 uploads
        for fake in self.fakes.values():
            fake.add_routes(self.app)
        self.view = DemoView(self)
        self.view.add_routes(self.app)
        # the fake 天眼查 registry API (issue 16 §4); the bot uses it with registry_overrides()
        from simulator.registry import RegistrySim

        self.registry = RegistrySim()
        self.registry.add_routes(self.app)
        if "feishu" in self.fakes:  # the consent page Feishu's H5 sign-in redirects through
            self.app.router.add_get("/open-apis/authen/v1/authorize", self.view.feishu_authorize)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def wecom(self):
        return self.fakes.get("wecom")

    @property
    def dingtalk(self):
        return self.fakes.get("dingtalk")

    @property
    def feishu(self):
        return self.fakes.get("feishu")

    @property
    def platforms(self) -> list[str]:
        return list(self.fakes)

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("simulator not started")
        return f"http://{self.host}:{self.port}"

    def app_ids(self) -> dict[str, str]:
        """platform → the app id the bot's events carry (for seeding identities)."""
        out = {p: self.credentials[p][APP_ID_FIELD[p]] for p in self.fakes
               if not (p == "wecom" and self.aibot)}
        if self.aibot:
            out["wecom_aibot"] = self.credentials["wecom"]["bot_id"]
        return out

    def settings_overrides(self, url: str | None = None,
                           platforms: list[str] | None = None) -> dict[str, str]:
        """kwargs for ``config.load_settings`` that make the bot talk to this simulator
        (credentials and API bases of ``platforms``, default all the simulator runs)."""
        base = url or self.url
        out: dict[str, str] = {}
        for p in platforms if platforms is not None else self.fakes:
            if p == "wecom" and self.aibot:
                from simulator.wecom_aibot import WS_PATH

                for name, value in self.credentials[p].items():
                    out[f"wecom_aibot_{name}"] = value
                out["wecom_aibot_ws_url"] = "ws" + base.removeprefix("http") + WS_PATH
                continue
            for name, value in self.credentials[p].items():
                out[f"{p}_{name}"] = value
            out[f"{p}_api_base"] = base
        if "dingtalk_app_key" in out:
            out["dingtalk_oapi_base"] = base
        return out

    def registry_overrides(self, url: str | None = None) -> dict[str, str]:
        """kwargs for ``config.load_settings`` that make the bot ask this simulator's fake
        天眼查 API for 工商信息 after OCR."""
        return {"registry_provider": "tianyancha", "registry_api_base": url or self.url,
                "registry_token": self.registry.token}

    def env(self) -> dict[str, str]:
        return {f"FIELDBOT_{k.upper()}": v for k, v in self.settings_overrides().items()}

    async def start(self, port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# -- the demo chat page's API -----------------------------------------------------------------
class DemoView:
    """Turns chat-page actions into real callbacks and recorded API calls into chat bubbles."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        self._seq = itertools.count(1)
        self.said: dict[tuple[str, str], list[dict]] = {}  # (platform, ext id) → user bubbles
        self.tap_codes: dict[str, str] = {}  # WeCom tap response_code → card id
        self.inline: dict[tuple[str, str], list[tuple[float, str, dict]]] = {}
        self.toasts: list[dict] = []
        self._transcript = ""  # the AI bot's voice: WeCom's own transcript of the sample

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.index)
        app.router.add_get("/demo/api/people", self.people)
        app.router.add_post("/demo/api/say", self.say)
        app.router.add_get("/demo/api/messages", self.messages)
        app.router.add_post("/demo/api/tap", self.tap)
        app.router.add_get("/demo/workbench", self.workbench)
        if STATIC.is_dir():
            app.router.add_static("/static/", STATIC)

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def people(self, request: web.Request) -> web.Response:
        platforms = [p for p in self.sim.platforms
                     if self.sim.bot_platforms is None or p in self.sim.bot_platforms]
        return web.json_response({"platforms": platforms, "people": people_json(),
                                  "bot_url": self.sim.bot_url, "samples": samples()})

    # -- the workbench: open the mini-app as this person, through the real sign-in path -----
    async def workbench(self, request: web.Request) -> web.StreamResponse:
        """What tapping the app in the platform's workbench does: the platform mints a
        one-time code for the user and opens the app's homepage with it."""
        platform = request.query.get("platform", "")
        fake, ext = self._who(platform, request.query.get("user", ""))
        code = fake.issue_web_code(ext)
        param = "authCode" if platform == "dingtalk" else "code"
        raise web.HTTPFound(f"{self._bot()}/app/auth/{platform}?"
                            + urlencode({param: code, "next": "/app/"}))

    async def feishu_authorize(self, request: web.Request) -> web.StreamResponse:
        """Feishu's authorize page, simulated: ``?user=`` picks who consents (else a list of
        the demo's people), then back to ``redirect_uri`` with ``code`` and ``state``."""
        back, state = request.query.get("redirect_uri", ""), request.query.get("state", "")
        if not back.startswith(("http://127.0.0.1", "http://localhost", self._bot())):
            raise web.HTTPBadRequest(text="redirect_uri must point at the bot")
        user = request.query.get("user", "")
        if user:
            fake, ext = self._who("feishu", user)
            raise web.HTTPFound(back + "?" + urlencode({"code": fake.issue_web_code(ext),
                                                        "state": state}))
        links = "".join(
            f'<li><a href="?{html.escape(urlencode({**request.query, "user": p["key"]}))}">'
            f'{html.escape(p["name"])} · {html.escape(p["role"])}</a></li>'
            for p in people_json())
        return web.Response(text=f"<!doctype html><meta charset=utf-8><title>飞书授权 (simulated)"
                                 f"</title><h1>飞书授权 (simulated)</h1><ul>{links}</ul>",
                            content_type="text/html")

    # -- helpers ---------------------------------------------------------------------------
    def _who(self, platform: str, user: str) -> tuple[Any, str]:
        fake = self.sim.fakes.get(platform)
        if fake is None:
            raise web.HTTPBadRequest(text=f"unknown platform {platform!r}")
        person = find_person(user)
        ext = person.external_id(platform) if person else user
        if not ext:
            raise web.HTTPBadRequest(text="user required")
        return fake, ext

    def _is_aibot(self, platform: str) -> bool:
        return platform == "wecom" and self.sim.aibot

    def _bot(self) -> str:
        if not self.sim.bot_url:
            raise web.HTTPServiceUnavailable(text="no bot attached to the simulator")
        return self.sim.bot_url

    @staticmethod
    async def _json(request: web.Request) -> dict:
        try:
            data = await request.json()
        except ValueError as exc:
            raise web.HTTPBadRequest(text="JSON body expected") from exc
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="JSON object expected")
        return data

    def _note(self, platform: str, ext: str, kind: str, text: str) -> None:
        self.said.setdefault((platform, ext), []).append(
            {"id": f"u{next(self._seq)}", "from": "user", "kind": kind, "text": text,
             "at": time.time()})

    # -- say -------------------------------------------------------------------------------
    async def say(self, request: web.Request) -> web.Response:
        # also mounted on the bot's own port, whose cap (64 KB, for callbacks) is too small
        # for a photo or a recording from the page
        data = await self._json(request.clone(client_max_size=MAX_UPLOAD * 2))
        platform = str(data.get("platform") or "")
        fake, ext = self._who(platform, str(data.get("user") or ""))
        kind = str(data.get("kind") or "text")
        bot = self._bot()
        n = next(self._seq)
        if kind == "text":
            text = str(data.get("text") or "").strip()
            if not text:
                raise web.HTTPBadRequest(text="text required")
            self._note(platform, ext, "text", text)
            status, body = await self.send_text(platform, fake, bot, ext, text)
        elif kind in ("voice", "image"):
            body, mime, seconds, what = media_input(kind, data, platform)
            self._transcript = (str(_sample("voice", str(data.get("sample") or "")).get(
                "text") or "") if kind == "voice" and not data.get("data") else "")
            self._note(platform, ext, kind, what)
            if kind == "voice":
                status, body = await self.send_voice(platform, fake, bot, ext, n, body, mime,
                                                     seconds)
            else:
                status, body = await self.send_image(platform, fake, bot, ext, n, body, mime)
        elif kind == "location":
            status, body = await self.send_location(platform, fake, bot, ext, data)
        else:
            raise web.HTTPBadRequest(text=f"unknown kind {kind!r}")
        return web.json_response({"status": status, "body": _short(body)})

    async def send_location(self, platform: str, fake, bot: str, ext: str, data: dict):
        """A location message (GCJ-02, as the clients' maps give it). DingTalk's robot and
        the WeCom AI bot receive none: the check-in comes from the mini-app there."""
        try:
            lat, lon = float(data.get("lat")), float(data.get("lng"))
        except (TypeError, ValueError):
            raise web.HTTPBadRequest(text="lat and lng required") from None
        label = str(data.get("label") or "")[:100]
        self._note(platform, ext, "location", label or f"{lat:.5f}, {lon:.5f}")
        if platform == "wecom" and not self._is_aibot(platform):
            return _pair(await fake.send_location(bot, ext, lat, lon, label))
        if platform == "feishu":
            return _pair(await fake.send_location(bot + FEISHU_PATH, ext, lat, lon, label))
        raise web.HTTPBadRequest(text=f"{platform} sends no location messages to a bot")

    async def send_text(self, platform: str, fake, bot: str, ext: str, text: str):
        if self._is_aibot(platform):
            return 200, await fake.push_text(ext, text)
        if platform == "feishu":
            return _pair(await fake.send_text(bot + FEISHU_PATH, ext, text))
        return _pair(await fake.send_text(bot, ext, text))

    async def send_voice(self, platform: str, fake, bot: str, ext: str, n: int, audio: bytes,
                         mime: str, seconds: int):
        """The platform's own voice callback; the audio waits in the fake's media store for
        the bot to download (WeCom's callback carries no duration, the others do)."""
        if self._is_aibot(platform):
            # WeCom gives an AI bot its own transcript, never the audio: the sample's text
            # (a recording of one's own has none here)
            return 200, await fake.push_voice(ext, self._transcript)
        if platform == "wecom":
            media_id = f"demo-voice-{n}"
            fake.add_media(media_id, audio, mime)
            return _pair(await fake.send_voice(bot, ext, media_id))
        if platform == "dingtalk":
            code = f"demo-voice-{n}"
            fake.add_media(code, audio)
            return _pair(await fake.send_audio(bot, ext, code, duration_ms=seconds * 1000))
        return _pair(await fake.send_audio(bot + FEISHU_PATH, ext, f"file_demo_voice_{n}",
                                           duration_ms=seconds * 1000, data=audio))

    async def send_image(self, platform: str, fake, bot: str, ext: str, n: int, image: bytes,
                         mime: str):
        if self._is_aibot(platform):
            return 200, await fake.push_image(ext, image)
        if platform == "wecom":
            media_id = f"demo-photo-{n}"
            fake.add_media(media_id, image, mime)
            return _pair(await fake.send_image(bot, ext, media_id))
        if platform == "dingtalk":
            code = f"demo-photo-{n}"
            fake.add_media(code, image)
            return _pair(await fake.send_picture(bot, ext, code))
        return _pair(await fake.send_image(bot + FEISHU_PATH, ext, f"img_demo_photo_{n}",
                                           data=image))

    # -- messages --------------------------------------------------------------------------
    async def messages(self, request: web.Request) -> web.Response:
        platform = request.query.get("platform", "")
        _fake, ext = self._who(platform, request.query.get("user", ""))
        return web.json_response({"messages": self.conversation(platform, ext),
                                  "toasts": [t for t in self.toasts
                                             if t["platform"] == platform and t["user"] == ext]})

    def conversation(self, platform: str, ext: str) -> list[dict]:
        """The user's own bubbles and the bot's messages to them, in time order."""
        bot = self.bot_messages(platform, ext)
        mine = self.said.get((platform, ext), [])
        return sorted(mine + bot, key=lambda m: m["at"])

    def bot_messages(self, platform: str, ext: str) -> list[dict]:
        parse = {"wecom": self._wecom_calls, "dingtalk": self._dingtalk_calls,
                 "feishu": self._feishu_calls}[platform]
        recorded = platform
        if self._is_aibot(platform):
            parse, recorded = self._aibot_calls, "wecom_aibot"
        out: list[dict] = []
        index: dict[str, dict] = {}
        steps: list[tuple[float, int, str, dict]] = []
        for n, call in enumerate(self.sim.recorder.of(recorded)):
            steps += [(call.at, n, kind, item) for kind, item in parse(call, ext)]
        for at, card_id, card in self.inline.get((platform, ext), []):
            # a card the bot answered inline to a tap (Feishu ``card`` in the 200)
            steps.append((at, -1, "update", {"id": card_id, "apply": lambda _p, c=card: c}))
        for _at, _n, kind, item in sorted(steps, key=lambda s: (s[0], s[1])):
            if kind == "new":
                out.append(item)
                if item.get("card") is not None:
                    index[item["id"]] = item
            elif kind == "update" and item["id"] in index:
                target = index[item["id"]]
                target["card"] = item["apply"](target["card"])
                target["updated"] = True
        return out

    # WeCom: message/send + update_template_card
    def _wecom_calls(self, call: Call, ext: str):
        body = call.body if isinstance(call.body, dict) else {}
        ok = isinstance(call.result, dict) and call.result.get("errcode") == 0
        if not ok or call.dest != ext:
            return
        if call.api == "send":
            msgtype = body.get("msgtype")
            mid = str(call.result.get("msgid") or id(call))
            content = body.get(msgtype) or {}
            if msgtype in ("text", "markdown"):
                yield "new", _bubble(mid, msgtype, call, text=str(content.get("content", "")))
            elif msgtype == "template_card":
                card = wecom_card(content)
                card["ref"] = {"task_id": content.get("task_id", ""),
                               "response_code": call.result.get("response_code", "")}
                # the send's own response_code also updates this card (e.g. a web decision)
                if call.result.get("response_code"):
                    self.tap_codes.setdefault(str(call.result["response_code"]), mid)
                yield "new", _bubble(mid, "card", call, card=card)
        elif call.api == "update_card":
            card_id = self.tap_codes.get(str(body.get("response_code") or ""))
            if card_id is None:
                return

            def apply(prev: dict, body=body) -> dict:
                if "template_card" in body:
                    return {**wecom_card(body["template_card"]), "ref": prev.get("ref", {})}
                status = str((body.get("button") or {}).get("replace_name") or "")
                return {**prev, "status": status, "buttons": []}

            yield "update", {"id": card_id, "apply": apply}

    # WeCom AI bot: in-band answers, proactive sends and card updates over its connection
    def _aibot_calls(self, call: Call, ext: str):
        fake = self.sim.fakes["wecom"]
        ok = isinstance(call.result, dict) and call.result.get("errcode") == 0
        if not ok or call.api == "ping" or fake.chat_of(call) != ext:
            return
        body = call.body if isinstance(call.body, dict) else {}
        mid = f"{call.api}:{call.result.get('req_id')}:{id(call)}"
        if call.api in ("aibot_respond_msg", "aibot_send_msg"):
            msgtype = body.get("msgtype")
            content = body.get(msgtype) or {}
            if msgtype in ("stream", "markdown", "text"):
                kind = "text" if msgtype == "text" else "markdown"
                yield "new", _bubble(mid, kind, call, text=str(content.get("content", "")))
            elif msgtype == "template_card":
                card = wecom_card(content)
                card["ref"] = {"task_id": content.get("task_id", "")}
                yield "new", _bubble(f"task:{content.get('task_id', '')}", "card", call,
                                     card=card)
        elif call.api == "aibot_respond_update_msg":
            tpl = body.get("template_card") or {}

            def apply(prev: dict, tpl=tpl) -> dict:
                return {**wecom_card(tpl), "ref": prev.get("ref", {})}

            yield "update", {"id": f"task:{tpl.get('task_id', '')}", "apply": apply}

    def _dingtalk_calls(self, call: Call, ext: str):
        body = call.body if isinstance(call.body, dict) else {}
        ok = isinstance(call.result, dict) and call.result.get("ok")
        if not ok or call.dest != ext:
            return
        if call.api == "send":
            try:
                param = json.loads(body.get("msgParam") or "{}")
            except ValueError:
                return
            key = body.get("msgKey")
            mid = str(call.result.get("processQueryKey") or id(call))
            if key == "sampleText":
                yield "new", _bubble(mid, "text", call, text=str(param.get("content", "")))
            elif key == "sampleMarkdown":
                text = str(param.get("text", ""))
                yield "new", _bubble(mid, "markdown", call, text=text)
            else:
                yield "new", _bubble(mid, "text", call, text=str(
                    param.get("text") or param.get("content") or param.get("title") or key))
        elif call.api == "card":
            track = str(body.get("outTrackId") or "")
            params = (body.get("cardData") or {}).get("cardParamMap") or {}
            card = dingtalk_card(params)
            card["ref"] = {"out_track_id": track}
            yield "new", _bubble(track, "card", call, card=card)
        elif call.api == "update_card":
            track = str(body.get("outTrackId") or "")
            params = (body.get("cardData") or {}).get("cardParamMap") or {}

            def apply(prev: dict, params=params) -> dict:
                if "card" in params:
                    return {**dingtalk_card(params), "ref": prev.get("ref", {})}
                new = dict(prev)
                if params.get("status"):
                    new.update(status=str(params["status"]), buttons=[])
                if params.get("title"):
                    new["title"] = str(params["title"])
                return new

            yield "update", {"id": track, "apply": apply}

    def _feishu_calls(self, call: Call, ext: str):
        body = call.body if isinstance(call.body, dict) else {}
        mine = call.dest in (ext, f"oc_p2p_{ext}")
        mid = str((call.result or {}).get("message_id") or "") if isinstance(
            call.result, dict) else ""
        if call.api == "send" and mine and mid:
            try:
                content = json.loads(body.get("content") or "{}")
            except ValueError:
                return
            msg_type = body.get("msg_type")
            if msg_type == "text":
                yield "new", _bubble(mid, "text", call, text=str(content.get("text", "")))
            elif msg_type == "post":
                yield "new", _bubble(mid, "markdown", call, text=feishu_post_text(content))
            elif msg_type == "interactive":
                card = feishu_card(content)
                card["ref"] = {"message_id": mid}
                yield "new", _bubble(mid, "card", call, card=card)
            else:
                yield "new", _bubble(mid, "text", call, text=f"[{msg_type}]")
        elif call.api in ("update_card", "patch") and mid:
            if call.api == "patch":
                try:
                    new = json.loads(body.get("content") or "{}")
                except ValueError:
                    return
            else:
                new = body.get("card") or {}

            def apply(prev: dict, new=new) -> dict:
                return {**feishu_card(new), "ref": prev.get("ref", {})}

            yield "update", {"id": mid, "apply": apply}

    def _card_of(self, platform: str, ext: str, card_id: str) -> dict | None:
        for item in self.bot_messages(platform, ext):
            if item["id"] == card_id:
                return item.get("card")
        return None

    # -- tap -------------------------------------------------------------------------------
    async def tap(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        platform = str(data.get("platform") or "")
        fake, ext = self._who(platform, str(data.get("user") or ""))
        card_id = str(data.get("card") or "")
        card = self._card_of(platform, ext, card_id)
        if card is None:
            raise web.HTTPNotFound(text="no such card")
        try:
            button = card["buttons"][int(data.get("button") or 0)]
        except (IndexError, ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text="no such button") from exc
        form = data.get("form") or {}
        if not isinstance(form, dict):
            raise web.HTTPBadRequest(text="form must be an object")
        form = {str(k)[:64]: v for k, v in form.items()
                if isinstance(v, str | bool | int | float | list)}
        bot = self._bot()
        self._note(platform, ext, "tap", f"👆 {button['text']}")
        status, body, toast = await self.send_tap(platform, fake, bot, ext, card_id, card,
                                                  button, form)
        if toast:
            self.toasts.append({"platform": platform, "user": ext, "at": time.time(), **toast})
        return web.json_response({"status": status, "body": _short(body), "toast": toast})

    async def send_tap(self, platform: str, fake, bot: str, ext: str, card_id: str,
                       card: dict, button: dict, form: dict | None = None
                       ) -> tuple[int, str, dict | None]:
        """The platform's own tap callback; ``form``: what the user entered in the card's
        inputs, carried the way that platform carries it (WeCom ``SelectedItems`` for its
        dropdown, DingTalk ``cardPrivateData.params``, Feishu ``form_value``)."""
        ref = card.get("ref") or {}
        form = {k: v for k, v in (form or {}).items() if v not in ("", None)}
        if self._is_aibot(platform):
            req_id = await fake.push_tap(ext, str(button["value"]), str(ref.get("task_id", "")))
            return 200, req_id, None
        if platform == "wecom":
            code = f"rc-demo-{next(self._seq)}"
            self.tap_codes[code] = card_id
            names = {i["name"] for i in card.get("inputs") or []}
            selected = {k: v for k, v in form.items() if k in names}
            status, body = _pair(await fake.tap_card(bot, ext, button["value"],
                                                     ref.get("task_id", ""), code,
                                                     selected=selected or None))
            return status, body, None
        if platform == "dingtalk":
            value = button["value"] if isinstance(button["value"], dict) else {}
            status, body = _pair(await fake.tap_card(
                bot, ext, ref.get("out_track_id", card_id), str(value.get("action", "")),
                action_id=str(value.get("actionId") or "btn_0"), form=form or None))
            return status, body, None
        if platform == "feishu":
            value = button["value"]
            for i in card.get("inputs") or []:  # Feishu's date_picker answers "2026-12-15 +0800"
                v = form.get(i["name"])
                if i["type"] == "date" and isinstance(v, str) and len(v) == 10:
                    form[i["name"]] = v + " +0800"
            reply = await fake.tap_card(bot + FEISHU_PATH, ext, value,
                                        ref.get("message_id", card_id),
                                        form_value=form or None)
            status, body = _pair(reply)
            data = getattr(reply, "data", None)
            toast = None
            if isinstance(data, dict):
                raw = data.get("toast")
                if isinstance(raw, dict):
                    toast = {"kind": str(raw.get("type") or "info"),
                             "text": str(raw.get("content") or "")}
                inline = data.get("card")
                if isinstance(inline, dict) and isinstance(inline.get("data"), dict):
                    self.inline.setdefault(("feishu", ext), []).append(
                        (time.time(), card_id,
                         {**feishu_card(inline["data"]), "ref": ref}))
            return status, body, toast
        raise web.HTTPBadRequest(text=f"taps on {platform} are not wired yet")


def wecom_card(tpl: dict) -> dict:
    """A WeCom ``template_card`` as the page draws it."""
    main = tpl.get("main_title") or {}
    fields = [{"label": str(f.get("keyname", "")), "value": str(f.get("value", ""))}
              for f in tpl.get("horizontal_content_list") or []]
    buttons = [{"text": str(b.get("text", "")), "style": _wecom_style(b.get("style")),
                "value": str(b.get("key", ""))} for b in tpl.get("button_list") or []]
    status = str((tpl.get("emphasis_content") or {}).get("title") or "")
    inputs = []
    sel = tpl.get("button_selection")
    if isinstance(sel, dict):  # WeCom's one native dropdown
        inputs.append({"type": "select", "name": str(sel.get("question_key", "")),
                       "label": str(sel.get("title", "")), "placeholder": "",
                       "initial": str(sel.get("selected_id", "")),
                       "options": [{"value": str(o.get("id", "")), "text": str(o.get("text", ""))}
                                   for o in sel.get("option_list") or []]})
    return {"title": str(main.get("title", "")), "subtitle": str(main.get("desc", "")),
            "fields": fields, "text": str(tpl.get("sub_title_text", "")), "status": status,
            "buttons": buttons, "inputs": inputs, "look": "wecom",
            "kind": str(tpl.get("card_type", ""))}


def dingtalk_card(params: dict) -> dict:
    """A DingTalk ``cardParamMap`` (our general template: a ``card`` JSON string) as drawn."""
    try:
        data = json.loads(params.get("card") or "{}")
    except (TypeError, ValueError):
        data = {}
    if not isinstance(data, dict) or not data:
        return {"title": str(params.get("title", "")), "subtitle": "", "fields": [],
                "text": str(params.get("markdown", "")), "status": str(params.get("status", "")),
                "buttons": []}
    buttons = [{"text": str(b.get("text", "")), "style": str(b.get("style") or "default"),
                "value": {"action": (b.get("params") or {}).get("action", ""),
                          "actionId": b.get("actionId", f"btn_{i}")}}
               for i, b in enumerate(data.get("buttons") or []) if isinstance(b, dict)]
    text = "\n".join(t for t in (str(data.get("text") or ""), str(data.get("footer") or ""))
                     if t)
    inputs = [_input_of(i) for i in data.get("inputs") or [] if isinstance(i, dict)]
    return {"title": str(data.get("title", "")), "subtitle": str(data.get("subtitle", "")),
            "fields": [{"label": str(f.get("label", "")), "value": str(f.get("value", ""))}
                       for f in data.get("fields") or [] if isinstance(f, dict)],
            "text": text, "status": str(data.get("status", "")), "buttons": buttons,
            "inputs": inputs, "look": "dingtalk", "color": str(data.get("color") or "blue")}


def _input_of(i: dict) -> dict:
    """Our DingTalk template's input (``cards.render_dingtalk``) as the page draws it."""
    return {"type": str(i.get("type", "text")), "name": str(i.get("name", "")),
            "label": str(i.get("label", "")), "placeholder": str(i.get("placeholder", "")),
            "initial": str(i.get("initial", "")), "checked": bool(i.get("checked")),
            "multiline": bool(i.get("multiline")), "required": bool(i.get("required")),
            "options": [{"value": str(o.get("value", "")), "text": str(o.get("text", ""))}
                        for o in i.get("options") or [] if isinstance(o, dict)]}


def feishu_card(card: dict) -> dict:
    """A Feishu card JSON 2.0 as the page draws it: title, text blocks, buttons."""
    header = card.get("header") or {}
    texts: list[str] = []
    buttons: list[dict] = []
    inputs: list[dict] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child)
            return
        if not isinstance(node, dict):
            return
        tag = node.get("tag")
        if tag == "button":
            value = next((b.get("value") for b in node.get("behaviors") or []
                          if isinstance(b, dict) and b.get("type") == "callback"),
                         node.get("value"))
            if value is not None:
                style = str(node.get("type") or "")
                buttons.append({"text": _content(node.get("text")),
                                "style": "primary" if "primary" in style else
                                "danger" if "danger" in style else "default",
                                "value": value})
            return
        if tag in FEISHU_INPUTS:
            inputs.append(_feishu_input(node))
            return
        if tag == "markdown":
            texts.append(str(node.get("content", "")))
        elif tag == "div":
            texts.append(_content(node.get("text")))
        for key in ("elements", "columns"):
            walk(node.get(key))

    walk((card.get("body") or {}).get("elements") or card.get("elements") or [])
    return {"title": _content(header.get("title")), "subtitle": _content(header.get("subtitle")),
            "fields": [], "text": "\n".join(t for t in texts if t), "status": "",
            "buttons": buttons, "inputs": inputs, "look": "feishu",
            "color": str(header.get("template") or "blue")}


FEISHU_INPUTS = ("select_static", "input", "date_picker", "checker")


def _feishu_input(node: dict) -> dict:
    """A Feishu form element as the page draws it (its value comes back in ``form_value``)."""
    tag = node.get("tag")
    kind = {"select_static": "select", "input": "text", "date_picker": "date",
            "checker": "checkbox"}[tag]
    return {"type": kind, "name": str(node.get("name", "")),
            "label": _content(node.get("label")) or _content(node.get("text")),
            "placeholder": _content(node.get("placeholder")),
            "initial": str(node.get("initial_date") or node.get("initial_option")
                           or node.get("default_value") or ""),
            "checked": bool(node.get("checked")),
            "multiline": node.get("input_type") == "multiline_text",
            "required": bool(node.get("required")),
            "options": [{"value": str(o.get("value", "")), "text": _content(o.get("text"))}
                        for o in node.get("options") or [] if isinstance(o, dict)]}


def feishu_post_text(content: dict) -> str:
    """The text of a Feishu ``post`` (rich text) message, any language block."""
    block = next((v for v in content.values() if isinstance(v, dict)), content)
    lines = []
    for para in block.get("content") or []:
        lines.append("".join(str(el.get("text", "")) for el in para if isinstance(el, dict)))
    title = str(block.get("title") or "")
    return "\n".join([title] + lines if title else lines)


def _content(node: Any) -> str:
    return str(node.get("content", "")) if isinstance(node, dict) else str(node or "")


def _wecom_style(style: Any) -> str:
    return {1: "primary", 3: "danger"}.get(style if isinstance(style, int) else 0, "default")


def _bubble(mid: str, kind: str, call: Call, text: str = "", card: dict | None = None) -> dict:
    return {"id": mid, "from": "bot", "kind": kind, "text": text, "card": card,
            "at": call.at, "updated": False}


def _pair(result: Any) -> tuple[int, str]:
    """Fakes answer (status, text) or a reply with ``.status`` / ``.data``."""
    if hasattr(result, "status") and hasattr(result, "data"):
        data = result.data
        return int(result.status), data if isinstance(data, str) else json.dumps(
            data, ensure_ascii=False, default=str)
    if isinstance(result, tuple) and len(result) >= 2:
        return int(result[0]), result[1] if isinstance(result[1], str) else json.dumps(
            result[1], ensure_ascii=False, default=str)
    if isinstance(result, int):
        return result, ""
    return 200, str(result)


def _short(text: str, n: int = 2000) -> str:
    return text if len(text) <= n else text[:n] + "…"


# -- standalone ------------------------------------------------------------------------------
async def _serve(host: str, port: int, bot_url: str | None, seed_url: str | None) -> None:
    sim = Simulator(host=host)
    sim.bot_url = bot_url
    if seed_url:
        from simulator.seed import seed

        counts = await asyncio.to_thread(seed, seed_url, sim.app_ids())
        print(f"seeded demo data into {seed_url}: {counts}")
    await sim.start(port)
    print(f"FieldBot platform simulator on {sim.url} (platforms: {', '.join(sim.platforms)})")
    print("Point a bot at it with:")
    for k, v in sim.env().items():
        print(f"  export {k}={v}")
    if bot_url:
        print(f"Web chat page: {sim.url}/ (callbacks go to {bot_url})")
    print("Ctrl-C stops it.", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fieldbot-sim",
                                     description="fake WeCom/DingTalk/Feishu on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--bot-url", default="http://127.0.0.1:8080",
                        help="where the chat page posts callbacks")
    parser.add_argument("--seed", metavar="DATABASE_URL",
                        help="seed the demo org into the bot's database first (idempotent)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(_serve(args.host, args.port, args.bot_url, args.seed))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
