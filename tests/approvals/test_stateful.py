"""Property-based (hypothesis stateful): any sequence of submissions, taps by anyone, duplicate
and racing taps, escalations, delegations, cancellations and clock jumps never yields two
decisions for one step, a decision by someone who was not allowed, or a lost request."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule
from sqlalchemy.exc import OperationalError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from config.rules import ApprovalRules
from storage import approvals as sm
from storage.models import AuditLog
from tests.approvals.helpers import T0, actor
from tests.approvals.org import PEOPLE, build_org

KEYS = [p[0] for p in PEOPLE]
REQUESTERS = ["zhangsan", "lisi", "wangwu", "lijingli", "chenjingli"]
DECISIONS = ("approval.approved", "approval.rejected")


async def _retry(fn):
    for _ in range(20):  # SQLite: a racer may be told "busy"; like the dispatcher, retry
        try:
            return await fn()
        except OperationalError:
            await asyncio.sleep(random.random() / 50)
    raise AssertionError("database stayed busy")


class ApprovalMachine(RuleBasedStateMachine):
    org = None
    engine = None
    checks = 0
    loop: asyncio.AbstractEventLoop | None = None

    requests = Bundle("requests")

    def __init__(self):
        super().__init__()
        self.now = T0
        self.mine: list[int] = []

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False)

    # -- helpers --------------------------------------------------------------------------
    async def _allowed(self, rid: int, seq: int, who: str, expected: int | None) -> bool:
        async with self.session() as s:
            req = await sm.get_request(s, rid)
            steps = await sm.get_steps(s, rid)
            step = next((x for x in steps if x.seq == seq), None)
            if req is None or step is None or req.state != "pending" or step.state != "pending":
                return False
            uid = self.org[who]
            if uid == req.requester_id:
                return False
            if expected is not None and expected != step.approver_id:
                return False
            return uid == step.approver_id or uid in await sm.delegates_of(
                s, step.approver_id, self.now)

    async def _decide(self, rid, seq, who, approve, expected):
        async def go():
            async with self.session() as s:
                out = await sm.decide(s, rid, seq, actor(self.org, who), approve, self.now,
                                      reason="" if approve else "其他", shown={"seq": seq},
                                      expected_approver=expected)
                await s.commit()
                return out.code
        return await _retry(go)

    # -- rules ----------------------------------------------------------------------------
    @rule(target=requests, who=st.sampled_from(REQUESTERS),
          amount=st.sampled_from([1_000, 49_999, 50_000, 86_000, 250_000]),
          pct=st.one_of(st.none(), st.sampled_from([5.0, 15.0, 20.0])),
          kind=st.sampled_from(["quote", "discount", "contract", "new_customer"]))
    def submit(self, who, amount, pct, kind):
        async def go():
            async with self.session() as s:
                u = await sm.get_user(s, self.org[who])
                req = await sm.create_draft(s, requester=u, kind=kind, amount=amount,
                                            discount_pct=pct, actor=actor(self.org, who),
                                            now=self.now)
                out = await sm.submit(s, req.id, actor(self.org, who), ApprovalRules(),
                                      self.now)
                await s.commit()
                assert out.ok
                assert all(x.approver_id != u.id for x in out.steps)
                return req.id
        rid = self.run(go())
        self.mine.append(rid)
        return rid

    @rule(rid=requests, seq=st.integers(1, 3), who=st.sampled_from(KEYS),
          approve=st.booleans(), addressed=st.booleans(), times=st.integers(1, 3))
    def tap(self, rid, seq, who, approve, addressed, times):
        async def go():
            expected = None
            if addressed:
                async with self.session() as s:
                    steps = await sm.get_steps(s, rid)
                    step = next((x for x in steps if x.seq == seq), None)
                    expected = step.approver_id if step else None
            allowed = await self._allowed(rid, seq, who, expected)
            codes = [await self._decide(rid, seq, who, approve, expected)
                     for _ in range(times)]
            assert codes.count("ok") == (1 if allowed else 0), (allowed, codes)
            assert all(c != "ok" for c in codes[1:])  # a repeated tap never acts again
        self.run(go())

    @rule(rid=requests, seq=st.integers(1, 3),
          whos=st.lists(st.sampled_from(KEYS), min_size=2, max_size=5),
          approve=st.booleans())
    def race(self, rid, seq, whos, approve):
        async def go():
            allowed = [await self._allowed(rid, seq, w, None) for w in whos]
            codes = await asyncio.gather(*[self._decide(rid, seq, w, approve, None)
                                           for w in whos])
            assert codes.count("ok") == (1 if any(allowed) else 0), (allowed, codes)
            for ok_code, a in zip(codes, allowed, strict=True):
                assert ok_code != "ok" or a
        self.run(go())

    @rule(rid=requests, to=st.sampled_from(KEYS))
    def escalate(self, rid, to):
        async def go():
            async with self.session() as s:
                step = next((x for x in await sm.get_steps(s, rid) if x.state == "pending"),
                            None)
                if step is None:
                    return
                out = await sm.escalate(s, step.id, self.org[to], sm.Actor(None), self.now)
                await s.commit()
                req = await sm.get_request(s, rid)
                assert out.code == ("own" if self.org[to] == req.requester_id else "ok")
        self.run(go())

    @rule(frm=st.sampled_from(KEYS), to=st.sampled_from(KEYS), days=st.integers(0, 3))
    def delegate(self, frm, to, days):
        if frm == to:
            return

        async def go():
            async with self.session() as s:
                a, b = await sm.get_user(s, self.org[frm]), await sm.get_user(s, self.org[to])
                await sm.set_delegation(s, a, b, self.now + timedelta(days=days, hours=1),
                                        actor(self.org, frm), self.now)
                await s.commit()
        self.run(go())

    @rule(rid=requests, who=st.sampled_from(KEYS))
    def cancel(self, rid, who):
        async def go():
            async with self.session() as s:
                before = await sm.get_request(s, rid)
                was, requester = before.state, before.requester_id
                out = await sm.cancel(s, rid, actor(self.org, who), self.now)
                await s.commit()
                assert out.ok == (self.org[who] == requester and was in sm.OPEN)
        self.run(go())

    @rule(hours=st.sampled_from([1, 5, 30]))
    def tick(self, hours):
        self.now += timedelta(hours=hours)

    # -- invariants -----------------------------------------------------------------------
    @invariant()
    def consistent(self):
        type(self).checks += 1
        if not self.mine:
            return

        async def go():
            async with self.session() as s:
                audits = (await s.exec(select(AuditLog).where(
                    AuditLog.entity == "approval_request",
                    col(AuditLog.action).in_(DECISIONS),
                    col(AuditLog.entity_id).in_([str(r) for r in self.mine])))).all()
                for rid in self.mine:
                    req = await sm.get_request(s, rid)
                    assert req is not None, f"lost request {rid}"
                    steps = await sm.get_steps(s, rid)
                    states = [x.state for x in steps]
                    assert steps and [x.seq for x in steps] == list(range(1, len(steps) + 1))
                    if req.state == "pending":
                        i = states.index("pending")
                        assert states.count("pending") == 1
                        assert set(states[:i]) <= {"approved"}
                        assert set(states[i + 1:]) <= {"waiting"}
                    elif req.state == "approved":
                        assert set(states) == {"approved"}
                    elif req.state == "rejected":
                        i = states.index("rejected")
                        assert states.count("rejected") == 1
                        assert set(states[:i]) <= {"approved"}
                        assert set(states[i + 1:]) <= {"skipped"}
                    else:
                        assert req.state == "cancelled"
                        assert not {"pending", "waiting"} & set(states)
                    for x in steps:
                        n = [a for a in audits if a.entity_id == str(rid)
                             and a.action in DECISIONS and a.detail.get("seq") == x.seq]
                        decided = x.state in ("approved", "rejected")
                        assert len(n) == (1 if decided else 0), (rid, x.seq, len(n))
                        if decided:
                            assert x.decided_by is not None
                            assert x.decided_by != req.requester_id
                            assert n[0].actor_id == x.decided_by
        self.run(go())


def _run(db_url: str, examples: int) -> None:
    org = build_org(db_url)
    loop = asyncio.new_event_loop()
    try:
        ApprovalMachine.org = org
        ApprovalMachine.loop = loop
        ApprovalMachine.engine = org.engine()
        test = ApprovalMachine.TestCase
        test.settings = settings(max_examples=examples, stateful_step_count=15, deadline=None,
                                 suppress_health_check=list(HealthCheck))
        ApprovalMachine.checks = 0
        test().runTest()
        # the run really explored: examples × steps invariant checks (no silent early stop)
        assert ApprovalMachine.checks >= examples * 5, ApprovalMachine.checks
        print(f"stateful: {ApprovalMachine.checks} invariant checks")
    finally:
        loop.run_until_complete(ApprovalMachine.engine.dispose())
        loop.close()


def test_state_machine_properties(db_url):
    _run(db_url, 60 if db_url.startswith("sqlite") else 30)
