"""The capture page's sync endpoint without a browser (``POST /app/api/capture``): each client
key is filed exactly once whatever the retries (also when they race), per-item errors are
clear and do not stop the next item, an expired session is a 401 JSON, oversize media is
refused on its item, and the answer carries the check-in distance. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
import pytest

from simulator.demo import start_demo
from storage.db import sync_engine
from tests.webapp.conftest import WebClient, patient

FIXTURES = Path(__file__).parent.parent / "media" / "fixtures"
PHOTO = (FIXTURES / "sign_gps_rotated.jpg").read_bytes()
# a spot in Shanghai, and points 80 m and 2 km north of it (1° of latitude ≈ 111.2 km)
HOME = (31.2304, 121.4737)


def north(metres: float) -> tuple[float, float]:
    return HOME[0] + metres / 111_195.0, HOME[1]


@pytest.fixture
async def stack(db_url, tmp_path):
    s = await start_demo("127.0.0.1", 0, tmp_path / "demo", database_url=db_url)
    engine = sync_engine(s.database_url)
    clients: list[WebClient] = []

    def sql(q: str, **params):
        from sqlalchemy import text

        with engine.begin() as conn:
            patient(conn)
            res = conn.execute(text(q), params)
            return [tuple(r) for r in res] if res.returns_rows else []

    def client() -> WebClient:
        c = WebClient(s.bot_url)
        clients.append(c)
        return c

    s.sql, s.client = sql, client
    yield s
    for c in clients:
        await c.close()
    engine.dispose()
    await s.stop()


def rows(stack, q: str, **params):
    return asyncio.to_thread(stack.sql, q, **params)


async def signed_in(stack, key: str = "zhangsan") -> tuple[WebClient, dict]:
    c = await stack.client().login(key)
    async with c.http.get("/app/api/capture/customers") as r:
        assert r.status == 200
        data = await r.json()
    assert data["csrf"] and data["customers"]
    return c, data


async def send(c: WebClient, fields: dict, files: dict | None = None, csrf: str | None = None
               ) -> tuple[int, dict]:
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, str(v))
    for name, (data, filename, ctype) in (files or {}).items():
        form.add_field(name, data, filename=filename, content_type=ctype)
    async with c.http.post("/app/api/capture", data=form,
                           headers={"X-CSRF-Token": csrf or c.csrf}) as r:
        return r.status, await r.json()


def item(data: dict, customer: dict, **extra) -> dict:
    return {"key": str(uuid.uuid4()), "user_id": data["user_id"], "customer_id": customer["id"],
            "customer_name": customer["name"], "text": "聊了交期，下周报价",
            "coord_system": "wgs84", **extra}


async def test_each_key_is_filed_once_whatever_the_retries(stack):
    c, data = await signed_in(stack)
    customer = data["customers"][0]
    lat, lng = north(80)
    await rows(stack, "UPDATE customers SET lat=:lat, lng=:lng, coord_system='wgs84' WHERE id=:id",
               lat=HOME[0], lng=HOME[1], id=customer["id"])
    one = item(data, customer, lat=lat, lng=lng, accuracy=12)
    photo = {"photo": (PHOTO, "photo.jpg", "image/jpeg")}
    status, first = await send(c, one, photo, data["csrf"])
    assert status == 200, first
    assert first["status"] == "filed" and first["customer"]["id"] == customer["id"]
    assert first["queued"] == ["web.photo"]
    assert first["checkin"]["label"].startswith("距客户 80 m") and not first["checkin"]["far"]
    # the page never heard the answer and sends it again, twice at once
    again = await asyncio.gather(*(send(c, one, photo, data["csrf"]) for _ in range(3)))
    assert [(s, b["status"], b["visit_id"]) for s, b in again] == [
        (200, "duplicate", first["visit_id"])] * 3
    # a brand-new key racing with itself is still one visit
    fresh = item(data, customer)
    raced = await asyncio.gather(*(send(c, fresh, None, data["csrf"]) for _ in range(4)))
    assert sorted(b.get("status", "") for _, b in raced) == ["duplicate"] * 3 + ["filed"], raced
    assert len({b["visit_id"] for _, b in raced}) == 1

    [(n, lat_s, acc, system, evidence, source)] = await rows(
        stack, "SELECT count(*) OVER (), lat, accuracy_m, coord_system, evidence, source "
               "FROM visits WHERE client_key = :k", k=one["key"])
    assert (n, system, source, acc) == (1, "wgs84", "photo", 12)
    assert abs(lat_s - lat) < 1e-9
    sha = json.loads(evidence)["photo_sha256"] if isinstance(evidence, str) else \
        evidence["photo_sha256"]
    assert len(sha) == 64
    assert await rows(stack, "SELECT count(*) FROM visits WHERE client_key = :k",
                      k=fresh["key"]) == [(1,)]
    jobs = await rows(stack, "SELECT name, owner, args FROM jobs WHERE idem_key LIKE :p",
                      p=f"capture:{one['key']}:%")  # one job, whatever the retries
    assert [(name, owner) for name, owner, _ in jobs] == [("web.photo", f"web:{data['user_id']}")]
    args = jobs[0][2] if isinstance(jobs[0][2], dict) else json.loads(jobs[0][2])
    assert args["ref"] == sha and args["visit_id"] == first["visit_id"]
    assert await rows(stack, "SELECT count(*) FROM audit_log WHERE action = 'visit.create'"
                      ) == [(2,)]

    far_lat, _ = north(2000)
    status, far = await send(c, item(data, customer, lat=far_lat, lng=HOME[1]), None,
                             data["csrf"])
    assert status == 200 and far["checkin"]["far"] and "2.0 km" in far["checkin"]["label"]


async def test_bad_items_are_refused_one_by_one(stack):
    c, data = await signed_in(stack)
    mine = data["customers"][0]
    [(theirs_id, theirs_name)] = (await rows(
        stack, "SELECT c.id, c.name FROM customers c JOIN users u ON u.id = c.owner_id "
               "WHERE u.name = '王五' ORDER BY c.id LIMIT 1"))
    assert theirs_id not in {x["id"] for x in data["customers"]}
    [(other_user,)] = await rows(stack, "SELECT id FROM users WHERE name = '李四'")

    forged = item(data, mine, user_id=other_user)
    status, body = await send(c, forged, None, data["csrf"])
    assert (status, body["code"]) == (403, "forged_user") and "another user" in body["error"]
    status, body = await send(c, item(data, {"id": theirs_id, "name": theirs_name}), None,
                              data["csrf"])
    assert (status, body["code"]) == (403, "not_your_customer"), body
    big = bytes(40 * 1024 * 1024)
    status, body = await send(c, item(data, mine), {"photo": (big, "p.jpg", "image/jpeg")},
                              data["csrf"])
    assert (status, body["code"]) == (413, "too_large") and "MB" in body["error"]
    status, body = await send(c, item(data, mine, audio_seconds=20 * 60),
                              {"audio": (b"\x1a\x45\xdf\xa3" + bytes(2048), "v.webm",
                                         "audio/webm")}, data["csrf"])
    assert (status, body["code"]) == (413, "too_long") and "10" in body["error"]
    # nothing of those was filed, and the next item syncs
    assert await rows(stack, "SELECT count(*) FROM visits") == [(0,)]
    status, body = await send(c, item(data, mine), None, data["csrf"])
    assert status == 200 and body["status"] == "filed"

    # renamed while the rep was offline: filed against the current record, and said so
    await rows(stack, "UPDATE customers SET name = '新名字科技有限公司' WHERE id = :id",
               id=mine["id"])
    status, body = await send(c, item(data, mine), None, data["csrf"])
    assert status == 200 and body["customer"] == {"id": mine["id"], "name": "新名字科技有限公司"}
    assert "改名" in body["notice"]
    # merged away (the old record is gone, its name now an alias of the survivor)
    survivor = data["customers"][1]
    await rows(stack, "INSERT INTO customer_aliases (customer_id, alias) VALUES (:c, :a)",
               c=survivor["id"], a="旧的客户名")
    status, body = await send(c, item(data, {"id": 987654, "name": "旧的客户名"}), None,
                              data["csrf"])
    assert status == 200 and body["customer"]["id"] == survivor["id"], body
    assert "合并" in body["notice"]
    assert await rows(stack, "SELECT count(*) FROM visits") == [(3,)]


async def test_expired_session_is_401_json(stack):
    c, data = await signed_in(stack)
    await rows(stack, "UPDATE web_sessions SET revoked_at = expires_at")
    status, body = await send(c, item(data, data["customers"][0]), None, data["csrf"])
    assert status == 401 and body["error"]
    assert await rows(stack, "SELECT count(*) FROM visits") == [(0,)]
