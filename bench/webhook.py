"""Webhook ack benchmark: the real bot (``python -m bot.cli serve``) under wrk, per platform/DB.

For each case (wecom|dingtalk|feishu × sqlite|postgresql) this starts a fresh database and the
real bot whose outbound API base points at a local sink (replies never leave the box),
pre-generates N unique, individually signed + encrypted callbacks with the platforms' SDK crypto
(wechatpy ``WeChatCrypto``, DingTalk robot HMAC, lark-oapi ``AESCipher`` key), drives them with
``wrk`` (``bench/replay.lua`` cycles through the file, one line per request), then checks that
every request that was acknowledged is stored exactly once (inbox rows by dedupe key). Baseline:
a bare aiohttp hello-world (read body, 200) on loopback under the same wrk settings.

Two modes per case: "ack" is the web process alone — verify, decrypt, parse, commit the inbox
row, answer — which is what the targets are about; "full bot" adds the worker process running
the handlers (and the outbox to the sink) on the same cores, as deployed. This VM's speed
drifts by ±30 % from minute to minute, so every case is measured ``--repeat`` times, each run
between two hello-world runs and rated against the better of them; the median is reported.

  python bench/webhook.py                # 6 cases, ack, 3 runs of 6 s each (~12 min)
  python bench/webhook.py --mode both    # and the full bot too (~45 min)
  python bench/webhook.py --cases wecom/sqlite --mode ack --repeat 1 --profile /tmp/prof

The last lines printed are one JSON object per measured case. Everything binds to 127.0.0.1,
every run is bounded (--duration), and every process started here is stopped by its PID.
Needs ``wrk`` (``apt-get install -y wrk``); without it a Python load generator is used.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from statistics import median

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "replay.lua"
PG_ADMIN = os.environ.get("FIELDBOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

WECOM = {"corp_id": "wwbench0000000001", "agent_id": "1000002", "secret": "bench-wecom-secret",
         "token": "benchToken123", "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}
DINGTALK = {"app_key": "dingbenchappkey", "app_secret": "bench-dingtalk-app-secret-0123456789",
            "robot_code": "dingbenchappkey", "token": "benchDingToken",
            "aes_key": "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg"}
FEISHU = {"app_id": "cli_bench0000000001", "app_secret": "bench-feishu-secret",
          "verification_token": "benchVerifyToken", "encrypt_key": "benchEncryptKey123"}
CREDS = {"wecom": WECOM, "dingtalk": DINGTALK, "feishu": FEISHU}
FILLER = "今天拜访了客户A公司采购经理，对方对报价有兴趣，预计下周签约，金额约二十万。"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# == request generation (SDK crypto, no simulator code) ======================================
class Gen:
    """Builds line-encoded requests: METHOD \\t PATH \\t HEADERS(\\x1f-joined) \\t BODY."""

    def __init__(self, platform: str, users: int = 5000):
        self.platform = platform
        self.users = [f"bench.user{i:04d}" for i in range(users)]
        if platform == "wecom":
            from wechatpy.enterprise.crypto import WeChatCrypto

            self.wx = WeChatCrypto(WECOM["token"], WECOM["aes_key"], WECOM["corp_id"])
        elif platform == "feishu":
            from lark_oapi.core.utils import AESCipher

            self.fs_key = AESCipher(FEISHU["encrypt_key"]).digest  # SHA256(encrypt_key)

    def text(self, msg_id: str) -> str:
        return f"bench {msg_id} {FILLER}"

    def line(self, msg_id: str, i: int) -> str:
        user = self.users[i % len(self.users)]
        method, path, headers, body = getattr(self, "_" + self.platform)(msg_id, user)
        for field in (path, body, *headers.values()):
            assert "\t" not in field and "\n" not in field
        hdr = "\x1f".join(f"{k}: {v}" for k, v in headers.items())
        return f"{method}\t{path}\t{hdr}\t{body}"

    def _wecom(self, msg_id: str, user: str):
        ts, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        inner = (f"<xml><ToUserName><![CDATA[{WECOM['corp_id']}]]></ToUserName>"
                 f"<FromUserName><![CDATA[{user}]]></FromUserName>"
                 f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                 f"<Content><![CDATA[{self.text(msg_id)}]]></Content>"
                 f"<MsgId>{msg_id}</MsgId><AgentID>{WECOM['agent_id']}</AgentID></xml>")
        out = self.wx.encrypt_message(inner, nonce, ts)
        enc = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", out).group(1)
        sig = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]></MsgSignature>", out).group(1)
        body = (f"<xml><ToUserName><![CDATA[{WECOM['corp_id']}]]></ToUserName>"
                f"<Encrypt><![CDATA[{enc}]]></Encrypt>"
                f"<AgentID><![CDATA[{WECOM['agent_id']}]]></AgentID></xml>")
        path = f"/webhooks/wecom?msg_signature={sig}&timestamp={ts}&nonce={nonce}"
        return "POST", path, {"Content-Type": "text/xml"}, body

    def _dingtalk(self, msg_id: str, user: str):
        now = int(time.time() * 1000)
        secret = DINGTALK["app_secret"]
        sign = base64.b64encode(hmac.new(secret.encode(), f"{now}\n{secret}".encode(),
                                         hashlib.sha256).digest()).decode()
        conv = f"cid-p2p-{user}"
        payload = {
            "msgId": msg_id, "msgtype": "text", "createAt": now, "conversationType": "1",
            "conversationId": conv, "senderId": f"$:LWCP_v1:${user}", "senderStaffId": user,
            "senderNick": user, "chatbotUserId": "$:LWCP_v1:$bot",
            "robotCode": DINGTALK["robot_code"], "isAdmin": False, "senderCorpId": "dingcorp",
            "chatbotCorpId": "dingcorp", "isInAtList": True,
            "sessionWebhook": f"https://oapi.dingtalk.com/robot/sendBySession?session={conv}",
            "sessionWebhookExpiredTime": now + 90 * 60 * 1000,
            "text": {"content": self.text(msg_id)}}
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return "POST", "/webhooks/dingtalk", {"Content-Type": "application/json",
                                              "timestamp": str(now), "sign": sign}, body

    def _feishu(self, msg_id: str, user: str):
        from Crypto.Cipher import AES
        from Crypto.Util.Padding import pad

        now_ms = str(int(time.time() * 1000))
        data = {"schema": "2.0",
                "header": {"event_id": msg_id, "token": FEISHU["verification_token"],
                           "create_time": now_ms, "event_type": "im.message.receive_v1",
                           "tenant_key": "tenant_bench", "app_id": FEISHU["app_id"]},
                "event": {"sender": {"sender_id": {"open_id": f"ou_{user}",
                                                   "union_id": f"on_{user}", "user_id": ""},
                                     "sender_type": "user", "tenant_key": "tenant_bench"},
                          "message": {"message_id": f"om_{msg_id}", "root_id": "",
                                      "parent_id": "", "create_time": now_ms,
                                      "chat_id": f"oc_p2p_{user}", "chat_type": "p2p",
                                      "message_type": "text",
                                      "content": json.dumps({"text": self.text(msg_id)},
                                                            ensure_ascii=False)}}}
        plain = json.dumps(data, ensure_ascii=False).encode()
        iv = secrets.token_bytes(16)
        blob = iv + AES.new(self.fs_key, AES.MODE_CBC, iv).encrypt(pad(plain, 16))
        body = json.dumps({"encrypt": base64.b64encode(blob).decode()})
        ts, nonce = str(int(time.time())), secrets.token_hex(8)
        sig = hashlib.sha256((ts + nonce + FEISHU["encrypt_key"]).encode()
                             + body.encode()).hexdigest()
        return "POST", "/webhooks/feishu", {
            "Content-Type": "application/json; charset=utf-8",
            "X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": sig}, body


def write_requests(path: Path, platform: str, prefix: str, n: int) -> None:
    gen = Gen(platform)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(gen.line(f"{prefix}{i}", i) + "\n")


# == helper servers (self-invoked modes) =====================================================
def serve_hello(port: int) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


SINK_ANSWER = {  # one answer every platform client accepts as success
    "errcode": 0, "errmsg": "ok", "code": 0, "msg": "success",
    "access_token": "sink-token", "expires_in": 7200,  # WeCom
    "accessToken": "sink-token", "expireIn": 7200, "processQueryKey": "sink",  # DingTalk
    "tenant_access_token": "sink-token", "expire": 7200,  # Feishu
    "msgid": "sink-msg", "data": {"message_id": "om_sink"},
}


def serve_sink(port: int) -> None:
    from aiohttp import web

    body = json.dumps(SINK_ANSWER).encode()

    async def sink(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", sink)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class Proc:
    def __init__(self, argv: list[str], env: dict | None = None, log: Path | None = None):
        self.log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.p = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self.log,
                                  stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def wait_http(url: str, timeout: float = 30.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # loopback only
                r.read()
                return True
        except Exception:  # noqa: BLE001
            time.sleep(0.1)
    return False


def self_cmd(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


# == load ===================================================================================
def _cpu_total() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def _proc_ticks(pids: list[int]) -> int:
    t = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            t += int(parts[11]) + int(parts[12])
        except OSError:
            pass
    return t


def _pg_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def run_load(port: int, reqs: Path, args, server_pids: list[int], sink_pids: list[int]) -> dict:
    """One bounded load run; returns the RESULT fields plus a CPU split (% of one core)."""
    b0, a0 = _cpu_total()
    s0, g0, k0 = _proc_ticks(server_pids), _proc_ticks(_pg_pids()), _proc_ticks(sink_pids)
    r0 = os.times()
    if shutil.which("wrk") and not args.python_load:
        cmd = ["wrk", f"-t{args.threads}", f"-c{args.conns}", f"-d{args.duration}s",
               "--timeout=5s", "--latency", "-s", str(LUA), f"http://127.0.0.1:{port}"]
        env = dict(os.environ, BENCH_REQS=str(reqs), BENCH_THREADS=str(args.threads))
        out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                             timeout=args.duration + 60).stdout
        m = re.search(r"^RESULT (.*)$", out, re.M)
        if not m:
            raise RuntimeError(f"wrk gave no RESULT line:\n{out}")
        res: dict = {}
        for kv in m.group(1).split():
            k, v = kv.split("=", 1)
            res[k] = v if k == "issued_by" else float(v)
        res["tool"] = "wrk"
    else:
        cmd = self_cmd("--python-load-worker", str(port), str(reqs), str(args.conns),
                       str(args.duration))
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res["tool"] = "python"
    r1 = os.times()
    b1, a1 = _cpu_total()
    s1, g1, k1 = _proc_ticks(server_pids), _proc_ticks(_pg_pids()), _proc_ticks(sink_pids)
    ncpu = os.cpu_count() or 1
    wall = (a1 - a0) / ncpu
    hz = os.sysconf("SC_CLK_TCK")
    load = ((r1.children_user + r1.children_system)
            - (r0.children_user + r0.children_system)) * hz
    cpu = {"busy": 100 * (b1 - b0) / wall, "server": 100 * (s1 - s0) / wall,
           "pg": 100 * (g1 - g0) / wall, "sink": 100 * (k1 - k0) / wall,
           "load": 100 * load / wall}
    cpu["other"] = cpu["busy"] - cpu["server"] - cpu["pg"] - cpu["sink"] - cpu["load"]
    res["cpu"] = {k: round(v, 1) for k, v in cpu.items()}
    return res


def python_load_worker(port: int, reqs: str, conns: int, duration: float) -> None:
    """Fallback load generator (separate process): closed loop, ``conns`` keep-alive clients."""
    import asyncio

    import aiohttp

    lines = [ln.rstrip("\n").split("\t") for ln in open(reqs, encoding="utf-8")]
    lat: list[float] = []
    stats = Counter()

    async def main() -> None:
        nxt = iter(range(10**12))
        end = time.perf_counter() + duration
        conn = aiohttp.TCPConnector(limit=conns)
        async with aiohttp.ClientSession(connector=conn) as s:
            async def worker() -> None:
                while time.perf_counter() < end:
                    i = next(nxt)
                    method, path, hdr, body = lines[i % len(lines)]
                    stats["issued"] += 1
                    stats["wrapped"] += i > 0 and i % len(lines) == 0
                    headers = dict(h.split(": ", 1) for h in hdr.split("\x1f") if h)
                    t0 = time.perf_counter()
                    try:
                        async with s.request(method, f"http://127.0.0.1:{port}{path}",
                                             headers=headers, data=body.encode()) as r:
                            await r.read()
                            stats["requests"] += 1
                            stats["non2xx"] += not 200 <= r.status < 300
                    except (aiohttp.ClientError, TimeoutError):
                        stats["read_err"] += 1
                        continue
                    lat.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conns)))
            stats["elapsed"] = time.perf_counter() - t0

    asyncio.run(main())
    lat.sort()

    def pct(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else 0.0

    print(json.dumps({"rps": stats["requests"] / stats["elapsed"],
                      "requests": stats["requests"], "issued": stats["issued"],
                      "issued_by": str(stats["issued"]), "wrapped": stats["wrapped"],
                      "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
                      "p999_ms": pct(99.9), "non2xx": stats["non2xx"],
                      "read_err": stats["read_err"], "connect_err": 0, "write_err": 0,
                      "timeout": 0}))


# == databases ==============================================================================
def pg_create() -> str:
    import psycopg

    name = f"fb_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def pg_drop(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def stored_keys(db_url: str, like: str) -> list[str]:
    from sqlalchemy import text

    from storage.db import sync_engine

    eng = sync_engine(db_url)
    try:
        with eng.connect() as c:
            return [r[0] for r in c.execute(
                text("SELECT dedupe_key FROM inbox_events WHERE dedupe_key LIKE :p"),
                {"p": like})]
    finally:
        eng.dispose()


def verify(keys: list[str], prefix: str, res: dict, threads: int, n: int) -> tuple[bool, dict]:
    """Every acknowledged request stored exactly once; nothing stored that was not sent."""
    idx = []
    for k in keys:
        tail = k.rsplit(":", 1)[1]
        idx.append(int(tail[len(prefix):]))
    c = Counter(idx)
    dups = sum(v - 1 for v in c.values() if v > 1)
    by = [int(x) for x in str(res.get("issued_by", "0")).split(",") if x]
    if len(by) != threads:  # python loader: one sequence
        allowed = set(range(min(int(res["issued"]), n)))
    else:
        allowed = {t + k * threads for t, cnt in enumerate(by) for k in range(cnt)
                   if t + k * threads < n}
    stray = [i for i in c if i not in allowed]
    ok_2xx = int(res["requests"] - res["non2xx"])
    errors = int(res.get("non2xx", 0) + res.get("read_err", 0) + res.get("connect_err", 0)
                 + res.get("write_err", 0) + res.get("timeout", 0))
    distinct_sent = len(allowed)
    # every 200 is a distinct request unless the file wrapped (then repeats are duplicates)
    acked_distinct = ok_2xx if not res.get("wrapped") else min(ok_2xx, n)
    detail = {"rows": len(keys), "distinct": len(c), "duplicates": dups, "stray": len(stray),
              "acked": ok_2xx, "issued_distinct": distinct_sent, "errors": errors}
    ok = (dups == 0 and not stray and len(c) >= acked_distinct and len(c) <= distinct_sent
          and int(res.get("non2xx", 0)) == 0)
    return ok, detail


# == profiling ==============================================================================
def summarize_profile(raw: Path, top: int = 25) -> str:
    """py-spy ``--format raw`` (collapsed stacks) → self and inclusive time by function."""
    selfc, incl = Counter(), Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, cnt = line.rpartition(" ")
        if not cnt.isdigit():
            continue
        n = int(cnt)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f.strip()) for f in stack.split(";")]
        if frames:
            selfc[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    cats = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, cnt = line.rpartition(" ")
        if cnt.isdigit():
            cats[_category(stack)] += int(cnt)
    out = [f"samples={total}", "-- where (by task/thread) --"]
    out += [f"{100 * v / total:5.1f}%  {k}" for k, v in cats.most_common()]
    out += ["-- self time --"]
    out += [f"{100 * v / total:5.1f}%  {k}" for k, v in selfc.most_common(top)]
    out += ["-- inclusive --"]
    out += [f"{100 * v / total:5.1f}%  {k}" for k, v in incl.most_common(top * 2)]
    return "\n".join(out)


CATEGORIES = [  # first match wins
    ("inbox writer thread (group commit)", ("Inbox._run",)),
    ("aiosqlite worker threads (handler/outbox SQL)", ("_connection_worker_thread",)),
    ("outbox sender", ("OutboxSender",)),
    ("sweeper", ("_sweep_forever",)),
    ("dispatcher: handlers in background", ("Dispatcher._guarded", "Dispatcher.run")),
    ("webhook ack path (aiohttp + verify/decrypt/parse + submit)",
     ("RequestHandler", "Webhook.")),
    ("event loop select/idle", ("EpollSelector.select",)),
]


def _category(stack: str) -> str:
    for name, marks in CATEGORIES:
        if any(m in stack for m in marks):
            return name
    return "other (loop internals, GC, ...)"


# == cases ==================================================================================
def bot_env(platform: str, db_url: str, data_dir: Path, port: int, sink: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDBOT_")}
    env.update({"FIELDBOT_DATABASE_URL": db_url, "FIELDBOT_HOST": "127.0.0.1",
                "FIELDBOT_PORT": str(port), "FIELDBOT_DATA_DIR": str(data_dir),
                "FIELDBOT_SECRET_KEY": "bench-secret-key-0123456789abcdef",
                f"FIELDBOT_{platform.upper()}_API_BASE": sink, "PYTHONUNBUFFERED": "1"})
    if platform == "dingtalk":
        env["FIELDBOT_DINGTALK_OAPI_BASE"] = sink
    for k, v in CREDS[platform].items():
        env[f"FIELDBOT_{platform.upper()}_{k.upper()}"] = v
    return env


# --mode ack: the web process alone (``serve --workers 0`` with its background dispatch and
# sweeper switched off), to measure the acknowledgement path without the handlers competing.
ACK_ONLY_MAIN = (
    "import asyncio, sys, bot.app as a, bot.dispatcher as d\n"
    "d.Dispatcher.kick = lambda self, *x, **k: None\n"
    "async def _idle(*x, **k):\n    await asyncio.sleep(10**9)\n"
    "a._sweep_forever = _idle\n"
    "from bot.cli import main\nsys.exit(main(sys.argv[1:]))\n")


class BotCase:
    """One bot (web process, plus its worker in "full" mode) on a fresh database, kept for
    all the measured runs of its case."""

    def __init__(self, platform: str, db: str, mode: str, args, work: Path, sink_url: str,
                 sink_pid: int):
        self.platform, self.db, self.mode, self.args = platform, db, mode, args
        self.name = f"{platform}/{db}" + (" (full bot)" if mode == "full" else "")
        self.dir = work / f"{platform}_{db}_{mode}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sink_pid = sink_pid
        self.db_url = (f"sqlite:///{self.dir / 'fieldbot.db'}" if db == "sqlite"
                       else pg_create())
        self.port = free_port()
        self.runs = 0
        ack = mode == "ack"
        entry = ["-c", ACK_ONLY_MAIN] if ack else ["-m", "bot.cli"]
        serve = ["serve", "--workers", "0" if ack else str(args.workers)]
        self.bot = Proc([sys.executable, *entry, "--log-level", args.log_level, *serve],
                        env=bot_env(platform, self.db_url, self.dir, self.port, sink_url),
                        log=self.dir / "bot.log")
        if not wait_http(f"http://127.0.0.1:{self.port}/healthz", 60):
            self.stop()
            raise RuntimeError(f"{self.name}: bot did not come up (see {self.dir}/bot.log)")
        write_requests(self.dir / "warm.txt", platform, f"w{uuid.uuid4().hex[:6]}x",
                       args.warm_requests)
        warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
        run_load(self.port, self.dir / "warm.txt", warm, [self.bot.pid], [sink_pid])

    def measure(self) -> dict:
        """One measured run on requests never sent before; checks what was stored."""
        args = self.args
        prefix = f"m{uuid.uuid4().hex[:6]}x"
        reqs = self.dir / f"reqs{self.runs}.txt"
        write_requests(reqs, self.platform, prefix, args.requests)
        wait_idle()  # the worker's backlog of the last run must not slow this one
        prof = raw = None
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            raw = Path(args.profile) / f"{self.name.split(' ')[0].replace('/', '_')}" \
                                       f"_{self.mode}_{self.runs}.txt"
            prof = subprocess.Popen(["py-spy", "record", "-p", str(self.bot.pid), "-r", "250",
                                     "-d", str(args.duration), "-f", "raw", "-o", str(raw),
                                     "--nonblocking"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        before = health(self.port)
        res = run_load(self.port, reqs, args, [self.bot.pid], [self.sink_pid])
        if prof is not None:
            prof.wait(timeout=args.duration + 30)
        time.sleep(1.0)  # requests wrk cut off at the deadline finish (or not) server-side
        after = health(self.port)
        if before and after:  # the web process's group commit: writes per transaction
            writes = after["inbox"]["writes"] - before["inbox"]["writes"]
            commits = after["inbox"]["commits"] - before["inbox"]["commits"]
            res["writes_per_commit"] = round(writes / max(1, commits), 1)
        keys = stored_keys(self.db_url, f"{self.platform}:%:{prefix}%")
        ok, detail = verify(keys, prefix, res, args.threads, args.requests)
        res.update(case=self.name, stored_ok=ok, verify=detail)
        if raw is not None:
            res["profile"] = str(raw)
        self.runs += 1
        reqs.unlink(missing_ok=True)
        return res

    def stop(self) -> None:
        self.bot.stop()
        if self.db == "postgresql":
            pg_drop(self.db_url)


def wait_idle(limit: float = 15.0, timeout: float = 90.0) -> None:
    """Until the machine is quiet (busy < ``limit`` % of one core over half a second)."""
    ncpu = os.cpu_count() or 1
    deadline = time.time() + timeout
    while time.time() < deadline:
        b0, a0 = _cpu_total()
        time.sleep(0.5)
        b1, a1 = _cpu_total()
        if a1 > a0 and 100 * ncpu * (b1 - b0) / (a1 - a0) < limit:
            return


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def hello_run(args, work: Path) -> dict:
    port = free_port()
    srv = Proc(self_cmd("--serve-hello", str(port)))
    try:
        if not wait_http(f"http://127.0.0.1:{port}/", 15):
            raise RuntimeError("hello server did not come up")
        reqs = work / "hello_reqs.txt"
        if not reqs.exists():
            write_requests(reqs, "wecom", "h", args.requests)
        warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
        run_load(port, reqs, warm, [srv.pid], [])
        return run_load(port, reqs, args, [srv.pid], [])
    finally:
        srv.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="wecom/sqlite,dingtalk/sqlite,feishu/sqlite,"
                                       "wecom/postgresql,dingtalk/postgresql,feishu/postgresql")
    ap.add_argument("--duration", type=int, default=6, help="seconds per measured run")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="wrk -t")
    ap.add_argument("--requests", type=int, default=0,
                    help="pre-generated requests per case (0 = 9000 × duration)")
    ap.add_argument("--warm-requests", type=int, default=6000)
    ap.add_argument("--log-level", default="WARNING", help="bot log level (INFO adds the "
                    "aiohttp access log line per request)")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker processes beside the web process (the bot's default: 1)")
    ap.add_argument("--mode", choices=("ack", "full", "both"), default="ack",
                    help="ack: the web process alone (the acknowledgement path: verify, "
                    "decrypt, parse, durable de-dup; no worker); full: the bot as deployed "
                    "(web + --workers), handlers competing for the same cores")
    ap.add_argument("--repeat", type=int, default=3,
                    help="measured runs per case, interleaved with hello-world runs")
    ap.add_argument("--python-load", action="store_true", help="use the Python load generator")
    ap.add_argument("--profile", help="directory: py-spy the bot during each measured run")
    ap.add_argument("--workdir", help="keep files here (default: a temp dir, removed)")
    ap.add_argument("--serve-hello", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--serve-sink", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--python-load-worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_hello:
        serve_hello(args.serve_hello)
        return 0
    if args.serve_sink:
        serve_sink(args.serve_sink)
        return 0
    if args.python_load_worker:
        p, r, c, d = args.python_load_worker
        python_load_worker(int(p), r, int(c), float(d))
        return 0
    args.requests = args.requests or 9000 * args.duration
    if args.profile and not shutil.which("py-spy"):
        sys.exit("--profile needs py-spy (pip install py-spy)")
    sys.path.insert(0, str(ROOT))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fb_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    sink_port = free_port()
    sink = Proc(self_cmd("--serve-sink", str(sink_port)))
    sink_url = f"http://127.0.0.1:{sink_port}"
    modes = ["ack", "full"] if args.mode == "both" else [args.mode]
    runs: list[dict] = []  # every measured run, with the hello-world runs either side
    hellos: list[dict] = []

    def hello() -> dict:
        wait_idle()
        h = hello_run(args, work)
        hellos.append(h)
        print(f"  hello-world: {h['rps']:.0f} req/s p50 {h['p50_ms']:.2f} ms "
              f"p99 {h['p99_ms']:.2f} ms", flush=True)
        return h

    try:
        if not wait_http(sink_url + "/", 15):
            raise RuntimeError("sink did not come up")
        last = hello()
        for case in args.cases.split(","):
            platform, db = case.split("/")
            for mode in modes:
                bc = BotCase(platform, db, mode, args, work, sink_url, sink.pid)
                try:
                    for _rep in range(args.repeat):
                        r = bc.measure()
                        print(f"{r['case']}: {r['rps']:.0f} req/s p50 {r['p50_ms']:.2f} "
                              f"p99 {r['p99_ms']:.2f} ms stored_ok={r['stored_ok']} "
                              f"{r['verify']} cpu {r['cpu']} "
                              f"writes/commit {r.get('writes_per_commit')}", flush=True)
                        r["hello_before"] = last["rps"]
                        last = hello()
                        r["hello_after"] = last["rps"]
                        runs.append(r)
                finally:
                    bc.stop()
    finally:
        sink.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    for r in runs:  # against the better of the two hello-world runs around it
        r["baseline"] = max(r["hello_before"], r["hello_after"])
        r["ratio"] = r["rps"] / r["baseline"]
    cases: dict[str, list[dict]] = {}
    for r in runs:
        cases.setdefault(r["case"], []).append(r)
    print()
    print(f"hello-world runs: {', '.join(str(round(h['rps'])) for h in hellos)} req/s; "
          f"wrk -t{args.threads} -c{args.conns} -d{args.duration}s; {args.repeat} runs per "
          f"case, each against the better hello-world run next to it; median shown")
    print("cpu: % of one core (2 = both) for the web process / PostgreSQL / wrk / the rest "
          "(worker, steal)")
    hdr = (f"{'case':30} {'req/s':>7} {'ratio':>6} {'(min)':>6} {'p50 ms':>7} {'p99 ms':>7} "
           f"{'ok':>3} {'cpu web/pg/wrk/other':>22}")
    print(hdr)
    print("-" * len(hdr))
    summary = []
    for name, rs in cases.items():
        mid = sorted(rs, key=lambda r: r["ratio"])[(len(rs) - 1) // 2]  # lower median
        c = mid["cpu"]
        row = {"bench": "webhook", "case": name, "rps": round(mid["rps"], 1),
               "p50_ms": round(median(r["p50_ms"] for r in rs), 2),
               "p99_ms": round(median(r["p99_ms"] for r in rs), 2),
               "baseline_rps": round(mid["baseline"], 1), "ratio": round(mid["ratio"], 3),
               "ratio_min": round(min(r["ratio"] for r in rs), 3), "runs": len(rs),
               "stored_ok": all(r["stored_ok"] for r in rs)}
        summary.append(row)
        print(f"{name:30} {row['rps']:7.0f} {row['ratio']:6.2f} {row['ratio_min']:6.2f} "
              f"{row['p50_ms']:7.2f} {row['p99_ms']:7.2f} "
              f"{'yes' if row['stored_ok'] else 'NO':>3} "
              f"{c['server']:.0f}/{c['pg']:.0f}/{c['load']:.0f}/{c['other']:.0f}")
    if args.profile:
        for r in runs:
            if r.get("profile") and Path(r["profile"]).exists():
                print(f"\n== profile {r['case']} ({r['profile']}) ==")
                print(summarize_profile(Path(r["profile"])))
    print()
    for row in summary:
        print(json.dumps(row, ensure_ascii=False))
    return 0 if all(row["stored_ok"] for row in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
