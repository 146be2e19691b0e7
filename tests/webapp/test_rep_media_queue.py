"""The mini-app's uploads go through the durable job queue (issue 18): the web process only
streams the file to the store and queues ``web.photo``; a worker reads it. A request whose
job is still queued answers 202 with a poll URL; the poll gives the same answer as a request
that waited; the job belongs to its uploader (another rep's poll is a 404); the same photo
uploaded twice reuses its job."""

from __future__ import annotations

import asyncio

import pytest

from tests.webapp.test_rep import FIXTURES, SIGNS, upload
from webapp import rep_visit


async def test_a_queued_upload_answers_202_and_its_poll_gives_the_result(web, monkeypatch):
    monkeypatch.setattr(rep_visit, "WAIT_S", 0.0)  # answer at once: the job is still queued
    rep = await web.client().login("zhangsan")
    await rep.page("/app/visits/new")
    sign = "sign_gps_rotated.jpg"
    data = (FIXTURES / sign).read_bytes()
    status, body = await upload(rep, "/app/visits/photo", "photo", data, sign, "image/jpeg")
    assert status == 202 and body["pending"] is True, body
    poll = body["poll"]
    assert poll == f"/app/visits/media/{body['job']}"
    # somebody else's poll: no such upload for them
    other = await web.client().login("lisi")
    async with other.http.get(poll, headers={"Accept": "application/json"}) as r:
        assert r.status == 404
    result = None
    for _ in range(60):
        async with rep.http.get(poll, headers={"Accept": "application/json"}) as r:
            if r.status == 200:
                result = await r.json()
                break
            assert r.status == 202, await r.text()
        await asyncio.sleep(0.5)
    assert result is not None, "the worker never read the photo"
    assert result["candidates"][0]["name"] == SIGNS[sign]
    rows = web.sql("SELECT name, owner, status, run_ms FROM jobs WHERE id = :i", i=body["job"])
    assert rows[0][:3] == ("web.photo", f"web:{_user_id(web, 'zhangsan')}", "done")
    assert rows[0][3] is not None
    # the same photo again: the same job, answered from its stored result
    monkeypatch.setattr(rep_visit, "WAIT_S", 5.0)
    status, again = await upload(rep, "/app/visits/photo", "photo", data, "again.jpg",
                                 "image/jpeg")
    assert status == 200 and again["photo_ref"] == result["photo_ref"]
    assert web.sql("SELECT count(*) FROM jobs WHERE name = 'web.photo'")[0][0] == 1


def _user_id(web, key: str) -> int:
    rows = web.sql("SELECT u.id FROM users u JOIN identities i ON i.user_id = u.id"
                   " WHERE i.external_id = :k OR u.name = :k LIMIT 1", k=key)
    if not rows:
        pytest.skip(f"no user {key} in the demo data")
    return rows[0][0]
