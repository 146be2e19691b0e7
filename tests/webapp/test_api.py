"""The REST API (/api/v1) against the running demo stack: bearer tokens (and only tokens: no
cookie, no CSRF; the /app pages in turn ignore the token), upserts, payments, visit paging,
validation errors as JSON 4xx, the body cap, the audit trail, the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy import text

from simulator.demo import start_demo
from storage.db import sync_engine
from tests.conftest import _pg_available, drop_pg_database, make_pg_database
from tests.webapp.conftest import patient

TOKEN = "t0k-" + "x" * 28
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(request, tmp_path):
    """The demo stack with two API tokens; ``api.http`` is a cookie-less client of it. On
    SQLite, or on PostgreSQL with ``@pytest.mark.parametrize("api", [...], indirect=True)``."""
    pg = getattr(request, "param", "sqlite") == "postgresql"
    if pg and not _pg_available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (required under CI)")
        pytest.skip("PostgreSQL not reachable")
    url = make_pg_database() if pg else None
    stack = await start_demo("127.0.0.1", 0, tmp_path / "demo", database_url=url,
                             api_tokens=[TOKEN, "other-t"])
    engine = sync_engine(stack.database_url)

    def sync_sql(q: str, **params):
        with engine.begin() as conn:
            patient(conn)
            res = conn.execute(text(q), params)
            return [tuple(r) for r in res] if res.returns_rows else []

    async def sql(q: str, **params):
        # in a thread: the server shares this event loop, and a blocking write here could
        # wait on a transaction the server can only finish when the loop runs
        return await asyncio.to_thread(sync_sql, q, **params)

    stack.sql = sql
    stack.http = aiohttp.ClientSession(stack.bot_url, cookie_jar=aiohttp.DummyCookieJar())
    yield stack
    await stack.http.close()
    engine.dispose()
    await stack.stop()
    if url:
        drop_pg_database(url)


BOTH = pytest.mark.parametrize("api", ["sqlite", "postgresql"], indirect=True)


async def call(api, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
    hdrs = dict(AUTH if headers is None else headers)
    kw = {"data": raw} if raw is not None else ({"json": body} if body is not None else {})
    if raw is not None:
        hdrs["Content-Type"] = "application/json"
    async with api.http.request(method, path, headers=hdrs, **kw) as r:
        data = await r.read()
        assert r.content_type == "application/json", (r.status, data[:300])
        return r.status, json.loads(data)


DEAL = {"customer": "华东精密零部件有限公司", "title": "ERP 同步商机", "stage": "proposal",
        "amount": 500000}


async def test_token_required_and_compared(api):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": "Basic " + TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}):
        status, body = await call(api, "GET", "/api/v1/visits", headers=headers)
        assert status == 401 and body["error"], headers
        status, _ = await call(api, "PUT", "/api/v1/deals/D-1", DEAL, headers=headers)
        assert status == 401
    assert await api.sql("SELECT count(*) FROM deals WHERE external_id = 'D-1'") == [(0,)]
    status, _ = await call(api, "GET", "/api/v1/visits",
                           headers={"Authorization": "Bearer other-t"})
    assert status == 200  # any configured token works


@BOTH
async def test_deal_upsert_create_then_update(api):
    status, d = await call(api, "PUT", "/api/v1/deals/ERP-D-100", DEAL)
    assert status == 201, d
    assert d["external_id"] == "ERP-D-100" and d["owner"] == "张三"  # the customer's owner
    created_activity = d["last_activity_at"]
    status, g = await call(api, "GET", "/api/v1/deals/ERP-D-100")
    assert status == 200 and g == d
    # same body again: no change to stage/amount → last_activity_at unchanged
    status, same = await call(api, "PUT", "/api/v1/deals/ERP-D-100", DEAL)
    assert status == 200 and same["last_activity_at"] == created_activity
    status, u = await call(api, "PUT", "/api/v1/deals/ERP-D-100",
                           {**DEAL, "stage": "won", "amount": 520000.5, "owner": "李四"})
    assert status == 200 and u["stage"] == "won" and u["amount"] == 520000.5
    assert u["owner"] == "李四" and u["last_activity_at"] > created_activity
    rows = await api.sql("SELECT stage, amount, title FROM deals WHERE external_id = 'ERP-D-100'")
    assert rows == [("won", 520000.5, "ERP 同步商机")]
    audit = await api.sql("SELECT actor_ref, platform, action, entity_id FROM audit_log "
                    "WHERE action = 'api.deal.upsert'")
    assert len(audit) == 3 and all(a[:2] == ("api", "api") for a in audit)
    status, _ = await call(api, "GET", "/api/v1/deals/NOPE")
    assert status == 404


@BOTH
async def test_customer_upsert_with_position(api):
    """An ERP sends its customers with their positions (and the system they are in); a
    customer first filed in chat takes the ERP's key by its exact name; a half position, an
    unknown system or another customer's name is a 422 that writes nothing."""
    body = {"name": "ERP 新客户", "region": "华东区", "owner": "张三", "lat": 31.2304,
            "lng": 121.4737, "coord_system": "gcj02", "address": "上海市浦东新区张江路88号",
            "credit_code": "91310115ma1k4f2d6r"}
    status, c = await call(api, "PUT", "/api/v1/customers/ERP-C-1", body)
    assert status == 201, c
    assert (c["name"], c["owner"], c["lat"], c["lng"], c["coord_system"]) == (
        "ERP 新客户", "张三", 31.2304, 121.4737, "gcj02")
    assert (c["address"], c["credit_code"]) == ("上海市浦东新区张江路88号", "91310115MA1K4F2D6R")
    status, g = await call(api, "GET", "/api/v1/customers/ERP-C-1")
    assert status == 200 and g == c
    status, u = await call(api, "PUT", "/api/v1/customers/ERP-C-1",
                           {"name": "ERP 新客户", "lat": 31.0, "lng": 121.0,
                            "coord_system": "wgs84"})
    assert status == 200 and (u["lat"], u["coord_system"], u["owner"]) == (31.0, "wgs84", "张三")
    status, a = await call(api, "PUT", "/api/v1/customers/ERP-C-2",
                           {"name": "南京金陵化工集团"})  # the seed's customer, no key yet
    assert status == 200 and a["owner"] == "李四" and a["lat"] is None
    assert await api.sql("SELECT external_id FROM customers WHERE name = '南京金陵化工集团'"
                         ) == [("ERP-C-2",)]
    before = await api.sql("SELECT id, name, lat, lng, coord_system, external_id FROM customers "
                           "ORDER BY id")
    for bad, field in (({"name": "半个坐标", "lat": 31.0, "lng": 121.0}, ""),
                       ({"name": "百度坐标", "lat": 31.0, "lng": 121.0, "coord_system": "bd09"},
                        "coord_system"),
                       ({"name": "纬度", "lat": 91, "lng": 121.0, "coord_system": "wgs84"}, "lat"),
                       ({"name": "南京金陵化工集团"}, "name"),
                       ({"name": "校验位", "credit_code": "91310115MA1K4F2D6X"}, "credit_code")):
        status, e = await call(api, "PUT", "/api/v1/customers/ERP-C-3", bad)
        assert status == 422, (bad, e)
        assert [d["field"] for d in e["details"]][:1] == [field], e
    assert await api.sql("SELECT id, name, lat, lng, coord_system, external_id FROM customers "
                         "ORDER BY id") == before
    audit = await api.sql("SELECT count(*) FROM audit_log WHERE action = 'api.customer.upsert'")
    assert audit == [(3,)]
    status, _ = await call(api, "GET", "/api/v1/customers/NOPE")
    assert status == 404


async def test_deal_customer_by_external_id(api):
    await api.sql("UPDATE customers SET external_id = 'C-9' WHERE name = '南京金陵化工集团'")
    status, d = await call(api, "PUT", "/api/v1/deals/X1", {**DEAL, "customer": "C-9"})
    assert status == 201 and d["customer"] == "南京金陵化工集团" and d["owner"] == "李四"


BAD_DEALS = [
    ({**DEAL, "customer": "没有这个客户"}, "customer"),
    ({**DEAL, "stage": "closing"}, "stage"),
    ({**DEAL, "amount": "100"}, "amount"),  # a string is not a number
    ({**DEAL, "amount": 1e300}, "amount"),
    ({**DEAL, "amount": -1}, "amount"),
    ({**DEAL, "amount": True}, "amount"),
    ({**DEAL, "owner": "nobody"}, "owner"),
    ({**DEAL, "colour": "red"}, "colour"),  # unknown field
    ({k: v for k, v in DEAL.items() if k != "title"}, "title"),
    ({**DEAL, "title": "   "}, "title"),
    ({**DEAL, "title": "x" * 201}, "title"),
    ({**DEAL, "title": "a\x00b"}, "title"),
]
MALFORMED = [b"{", b"", b"[1, 2]", b"null", b'{"amount": NaN}',
             b'{"amount": 1' + b"0" * 400 + b"}", b"\xff\xfe", b'"text"']


@BOTH
async def test_validation_errors_name_the_field(api):
    for body, field in BAD_DEALS:
        status, err = await call(api, "PUT", "/api/v1/deals/V-1", body)
        assert status == 422, (body, err)
        assert err["error"] and any(d["field"] == field for d in err["details"]), err
    for raw in MALFORMED:  # not JSON, or not an object: a 4xx JSON error, never a 500
        status, err = await call(api, "PUT", "/api/v1/deals/M-1", raw=raw)
        assert status in (400, 422) and "error" in err and isinstance(err["details"], list)
    assert await api.sql("SELECT count(*) FROM deals WHERE external_id IN ('V-1', 'M-1')"
                         ) == [(0,)]


async def test_bad_key_and_body_cap(api):
    status, err = await call(api, "PUT", "/api/v1/deals/has%20space", DEAL)
    assert status == 422 and err["details"][0]["field"] == "external_id"
    big = json.dumps({**DEAL, "title": "x" * (1024 * 1024)}).encode()
    status, err = await call(api, "PUT", "/api/v1/deals/BIG", raw=big)
    assert status == 413 and "1 MB" in err["error"]

    async def chunks():  # no Content-Length: the cap still holds while streaming
        for _ in range(40):
            yield b" " * 65536

    async with api.http.put("/api/v1/deals/BIG", data=chunks(), headers=AUTH) as r:
        assert r.status == 413


@BOTH
async def test_invoice_upsert_and_payments(api):
    inv = {"customer": "广州珠江食品有限公司", "amount": 1000, "due_date": "2026-12-31"}
    status, i = await call(api, "PUT", "/api/v1/invoices/ERP-INV-1", inv)
    assert status == 201 and i["paid_amount"] == 0 and i["outstanding"] == 1000, i
    status, i = await call(api, "PUT", "/api/v1/invoices/ERP-INV-1",
                           {**inv, "deal": "包装线升级", "due_date": "2027-01-15"})
    assert status == 200 and i["deal"] == "包装线升级" and i["due_date"] == "2027-01-15"
    status, err = await call(api, "PUT", "/api/v1/invoices/ERP-INV-1", {**inv, "deal": "nope"})
    assert status == 422 and err["details"][0]["field"] == "deal"
    status, err = await call(api, "PUT", "/api/v1/invoices/ERP-INV-1",
                             {**inv, "due_date": "2026-13-01"})
    assert status == 422 and err["details"][0]["field"] == "due_date"

    pay = {"invoice": "ERP-INV-1", "amount": 400, "paid_at": "2026-12-01T10:00:00+08:00",
           "reference": "BANK-1"}
    status, p = await call(api, "POST", "/api/v1/payments", pay)
    assert status == 201 and p["invoice"]["paid_amount"] == 400 and not p["replayed"], p
    status, p2 = await call(api, "POST", "/api/v1/payments", pay)  # a retry: not paid twice
    assert status == 200 and p2["replayed"] and p2["id"] == p["id"]
    assert p2["invoice"]["paid_amount"] == 400
    status, err = await call(api, "POST", "/api/v1/payments",
                             {**pay, "reference": "BANK-2", "amount": 601})
    assert status == 422 and err["details"][0]["field"] == "amount"  # overpayment
    status, p3 = await call(api, "POST", "/api/v1/payments",
                            {**pay, "reference": "BANK-3", "amount": 600})
    assert status == 201 and p3["invoice"]["outstanding"] == 0
    assert p3["invoice"]["paid_at"].startswith("2026-12-01T02:00:00")
    assert await api.sql("SELECT count(*), sum(p.amount) FROM payments p JOIN invoices i "
                   "ON i.id = p.invoice_id WHERE i.number = 'ERP-INV-1'") == [(2, 1000.0)]
    status, err = await call(api, "POST", "/api/v1/payments", {**pay, "invoice": "INV-NONE"})
    assert status == 422 and err["details"][0]["field"] == "invoice"
    status, err = await call(api, "POST", "/api/v1/payments",
                             {**pay, "paid_at": "2026-12-01T10:00:00"})  # naive time
    assert status == 422 and err["details"][0]["field"] == "paid_at"
    status, g = await call(api, "GET", "/api/v1/invoices/ERP-INV-1")
    assert status == 200 and g["paid_amount"] == 1000
    assert await api.sql("SELECT count(*) FROM audit_log WHERE actor_ref = 'api' AND "
                   "action = 'api.payment'") == [(2,)]


@BOTH
async def test_visits_paging(api):
    (uid,), = await api.sql("SELECT id FROM users WHERE name = '张三'")
    (cid,), = await api.sql("SELECT id FROM customers WHERE name = '华东精密零部件有限公司'")
    base = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(7):
        await api.sql("INSERT INTO visits (user_id, customer_id, source, summary, evidence, "
                "created_at) VALUES (:u, :c, 'manual', :s, '{}', :t)", u=uid, c=cid,
                s=f"visit {n}", t=(base + timedelta(days=n)).isoformat())
    seen, cursor, pages = [], None, 0
    while True:
        q = "/api/v1/visits?limit=3&since=2026-11-02T00:00:00%2B00:00"
        status, page = await call(api, "GET", q + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        pages += 1
        seen += [v["summary"] for v in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"visit {n}" for n in range(1, 7)] and pages == 2
    assert page["items"][0]["user"] == "张三"
    for bad in ("limit=0", "limit=501", "limit=x", "cursor=-1", "since=yesterday"):
        status, err = await call(api, "GET", "/api/v1/visits?" + bad)
        assert status == 422 and err["details"], bad


async def test_api_needs_no_cookie_or_csrf_and_pages_ignore_the_token(api):
    # the api fixture's client has no cookie jar: the PUTs above worked without CSRF; and
    # the /app pages do not take the API token as a sign-in
    async with api.http.get("/app/data", headers=AUTH, allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"].startswith("/app/login")
    async with api.http.post("/app/data/import", headers=AUTH, data={"kind": "customers"}) as r:
        assert r.status in (401, 403)
    status, _ = await call(api, "PUT", "/api/v1/deals/NC-1", DEAL)
    assert status == 201


async def test_openapi_document(api):
    async with api.http.get("/api/v1/openapi.json") as r:
        doc = await r.json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/api/v1/customers/{external_id}",
                                 "/api/v1/deals/{external_id}", "/api/v1/invoices/{number}",
                                 "/api/v1/payments", "/api/v1/visits",
                                 "/api/v1/targets", "/api/v1/attainment",  # issue 17
                                 "/api/v1/forecast"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "additionalProperties" in doc["components"]["schemas"]["DealIn"]
    async with api.http.get("/api/v1/docs") as r:
        assert r.status == 200 and "PUT /api/v1/deals/{external_id}" in await r.text()
