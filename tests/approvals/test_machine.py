"""The state machine on SQLite and PostgreSQL: routing, transitions, integrity, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from config.rules import ApprovalRules, load_rules
from storage import approvals as sm
from tests.approvals.helpers import T0, actor, audits, new_request, state, tap


def test_default_chains_by_kind_amount_discount():
    r = ApprovalRules()
    assert r.chain_for("quote", 30_000, None) == ["manager"]
    assert r.chain_for("quote", 50_000, None) == ["manager", "vp"]
    assert r.chain_for("quote", 86_000, 20) == ["manager", "vp", "finance"]
    assert r.chain_for("discount", 0, 15) == ["manager"]
    assert r.chain_for("discount", 0, 15.5) == ["manager", "finance"]
    assert r.chain_for("contract", 300_000, None) == ["manager", "vp"]
    assert r.chain_for("new_customer", 0, None) == ["manager"]


def test_rules_reject_typos_and_bad_roles():
    with pytest.raises(ValueError):
        load_rules({"remind_after": 3})
    with pytest.raises(ValueError):
        load_rules({"chains": [{"steps": ["ceo"]}]})
    r = load_rules({"remind_after_h": 2, "chains": [{"steps": ["vp"]}]}, 7)
    assert r.version == 7 and r.chain_for("quote", 1, None) == ["vp"]


@pytest.mark.parametrize(("bad", "words"), [
    ({"remind_after_h": 0}, "remind_after_h must be above 0"),
    ({"remind_after_h": 6, "escalate_after_h": 5}, "升级时限不能早于提醒时限"),
    ({"remind_after_h": "inf"}, "finite number"),
    ({"max_escalations": -1}, "must be at least 0 (now -1)"),
    ({"work_days": []}, "work_days must be numbers 0 (Monday) to 6"),
    ({"work_days": [0, 7]}, "工作日必须是 0–6 之间的数字"),
    ({"work_start": "18:00", "work_end": "09:00"}, "work_end must be after work_start"),
    ({"work_end": "25:00"}, "time"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"chains": [{"when": {"kinds": ["loan"]}, "steps": ["vp"]}]}, "unknown kind(s) ['loan']"),
    ({"chains": [{"when": {"amount_gte": -1}, "steps": ["vp"]}]}, "金额不能为负"),
    ({"chains": [{"when": {"amount_gte": 9, "amount_lt": 9}, "steps": ["vp"]}]},
     "empty amount range"),
    ({"extra": [{"when": {"discount_gt": 100}, "steps": ["finance"]}]}, "折扣必须在 0–100%"),
    ({"chains": [{"steps": []}]}, "needs at least one approver role"),
])
def test_the_schema_refuses_each_policy_mistake(bad, words):
    """Not only the admin console: TOML and the ``审批规则`` chat command load through here."""
    with pytest.raises(ValidationError) as caught:
        load_rules(bad)
    assert words in str(caught.value)


def test_working_hours_and_quiet_hours():
    r = ApprovalRules()
    fri_17 = T0 + timedelta(days=4, hours=8)  # Friday 17:00 local
    mon_10 = T0 + timedelta(days=7, hours=1)  # next Monday 10:00 local
    assert r.working_hours_between(fri_17, mon_10) == pytest.approx(2.0)
    assert r.may_notify(T0 + timedelta(hours=1))
    assert not r.may_notify(T0 + timedelta(hours=14))  # 23:00 local, quiet
    assert not r.may_notify(T0 + timedelta(days=5, hours=2))  # Saturday


async def test_chain_resolved_by_role_and_team(org, session_factory):
    sf = session_factory
    rid, out = await new_request(sf, org, amount=86_000, pct=20)
    assert out.ok
    req, steps = await state(sf, rid)
    assert req.state == "pending" and req.rule_version == 0
    assert [(s.role, s.approver_id, s.state) for s in steps] == [
        ("manager", org["lijingli"], "pending"), ("vp", org["wangzong"], "waiting"),
        ("finance", org["qiancaiwu"], "waiting")]
    # a manager's "manager" step goes to their own manager, never to themselves
    rid2, _ = await new_request(sf, org, who="lijingli", amount=10_000)
    _, steps2 = await state(sf, rid2)
    assert [s.approver_id for s in steps2] == [org["wangzong"]]
    # the VP asking: nobody above but the admin, the VP never approves their own
    rid3, _ = await new_request(sf, org, who="wangzong", amount=90_000)
    _, steps3 = await state(sf, rid3)
    assert [s.approver_id for s in steps3] == [org["admin"]]


async def test_full_approval_and_audit(org, session_factory):
    sf = session_factory
    rid, _ = await new_request(sf, org, amount=86_000)
    out = await tap(sf, org, rid, 1, "lijingli")
    assert out.ok and out.next_step.seq == 2 and out.next_step.state == "pending"
    assert not out.final
    out = await tap(sf, org, rid, 2, "wangzong", now=T0 + timedelta(hours=1))
    assert out.ok and out.final and out.request.state == "approved"
    req, steps = await state(sf, rid)
    assert [s.state for s in steps] == ["approved", "approved"]
    assert [s.decided_by for s in steps] == [org["lijingli"], org["wangzong"]]
    acts = [a.action for a in await audits(sf, rid)]
    assert acts == ["approval.draft", "approval.submit", "approval.approved", "approval.approved"]
    last = (await audits(sf, rid))[-1]
    assert last.actor_id == org["wangzong"] and last.platform == "wecom"
    assert last.detail["shown"] == {"seq": 2} and last.at == T0 + timedelta(hours=1)


async def test_reject_skips_the_rest(org, session_factory):
    sf = session_factory
    rid, _ = await new_request(sf, org, amount=86_000, pct=30)
    out = await tap(sf, org, rid, 1, "lijingli", approve=False, reason="折扣过大")
    assert out.ok and out.final and out.request.state == "rejected"
    _, steps = await state(sf, rid)
    assert [s.state for s in steps] == ["rejected", "skipped", "skipped"]
    assert steps[0].reason == "折扣过大"
    assert (await tap(sf, org, rid, 2, "wangzong")).code == "stale"


async def test_integrity_refusals_change_nothing(org, session_factory):
    sf = session_factory
    rid, _ = await new_request(sf, org, amount=86_000)
    assert (await tap(sf, org, rid, 1, "chenjingli")).code == "forbidden"  # other manager
    assert (await tap(sf, org, rid, 1, "zhangsan")).code == "own"  # the requester
    assert (await tap(sf, org, rid, 2, "wangzong")).code == "stale"  # not yet its turn
    assert (await tap(sf, org, rid, 9, "wangzong")).code == "not_found"
    req, steps = await state(sf, rid)
    assert req.state == "pending" and [s.state for s in steps] == ["pending", "waiting"]
    acts = [a.action for a in await audits(sf, rid)]
    assert acts.count("approval.refused") == 3 and acts.count("approval.stale_tap") == 1
    # duplicate tap: exactly one transition
    assert (await tap(sf, org, rid, 1, "lijingli")).ok
    dup = await tap(sf, org, rid, 1, "lijingli")
    assert dup.code == "stale"
    acts = [a.action for a in await audits(sf, rid)]
    assert acts.count("approval.approved") == 1


async def test_delegate_acts_until_expiry(org, session_factory):
    sf = session_factory
    async with sf() as s:
        mgr, rep = await sm.get_user(s, org["lijingli"]), await sm.get_user(s, org["lisi"])
        await sm.set_delegation(s, mgr, rep, T0 + timedelta(days=2), actor(org, "lijingli"), T0)
        await s.commit()
    rid, _ = await new_request(sf, org, amount=10_000)
    late = T0 + timedelta(days=3)
    assert (await tap(sf, org, rid, 1, "lisi", now=late)).code == "forbidden"
    out = await tap(sf, org, rid, 1, "lisi", now=T0 + timedelta(hours=1))
    assert out.ok and out.step.decided_by == org["lisi"]
    assert out.step.approver_id == org["lijingli"]
    a = [x for x in await audits(sf, rid) if x.action == "approval.approved"][0]
    assert a.detail["on_behalf"] == org["lijingli"]
    # a delegate never approves their own request
    rid2, _ = await new_request(sf, org, who="lisi", amount=10_000)
    assert (await tap(sf, org, rid2, 1, "lisi")).code == "own"


async def test_escalation_reassigns_and_old_cards_go_stale(org, session_factory):
    sf = session_factory
    rid, _ = await new_request(sf, org, amount=10_000)
    _, steps = await state(sf, rid)
    async with sf() as s:
        out = await sm.escalate(s, steps[0].id, org["wangzong"], sm.Actor(None), T0)
        await s.commit()
    assert out.ok and out.step.approver_id == org["wangzong"]
    # the old approver's card (addressed to them) is now stale; the new approver decides
    old = await tap(sf, org, rid, 1, "lijingli", expected=org["lijingli"])
    assert old.code == "stale"
    assert (await tap(sf, org, rid, 1, "lijingli")).code == "forbidden"
    assert (await tap(sf, org, rid, 1, "wangzong", expected=org["wangzong"])).ok


async def test_submit_and_cancel_exactly_once(org, session_factory):
    sf = session_factory
    async with sf() as s:
        u = await sm.get_user(s, org["zhangsan"])
        req = await sm.create_draft(s, requester=u, kind="quote", amount=1000,
                                    actor=actor(org, "zhangsan"), now=T0)
        await s.commit()
    async with sf() as s:
        assert (await sm.submit(s, req.id, actor(org, "lisi"), ApprovalRules(), T0)).code \
            == "forbidden"
        assert (await sm.submit(s, req.id, actor(org, "zhangsan"), ApprovalRules(), T0)).ok
        assert (await sm.submit(s, req.id, actor(org, "zhangsan"), ApprovalRules(), T0)).code \
            == "stale"
        await s.commit()
    async with sf() as s:
        assert (await sm.cancel(s, req.id, actor(org, "lijingli"), T0)).code == "forbidden"
        out = await sm.cancel(s, req.id, actor(org, "zhangsan"), T0)
        assert out.ok and [x.state for x in out.steps] == ["skipped"]
        await s.commit()
    assert (await tap(sf, org, req.id, 1, "lijingli")).code == "stale"


async def test_rule_change_never_alters_requests_in_flight(org, session_factory):
    sf = session_factory
    async with sf() as s:
        rules0 = await sm.current_rules(s, {})
    rid_old, _ = await new_request(sf, org, amount=20_000, rules=rules0)
    async with sf() as s:
        new = await sm.save_rules(s, {"chains": [{"steps": ["manager", "vp", "finance"]}]},
                                  actor(org, "admin"), T0)
        await s.commit()
        assert new.version == 1
    async with sf() as s:
        rules1 = await sm.current_rules(s, {})
    assert rules1.version == 1
    rid_new, _ = await new_request(sf, org, amount=20_000, rules=rules1)
    old, old_steps = await state(sf, rid_old)
    new_req, new_steps = await state(sf, rid_new)
    assert old.rule_version == 0 and len(old_steps) == 1
    assert new_req.rule_version == 1 and len(new_steps) == 3
    async with sf() as s:
        assert (await sm.save_rules(s, {"chains": [{"steps": ["vp"]}]}, actor(org, "admin"),
                                    T0)).version == 2
        with pytest.raises(ValueError):
            await sm.save_rules(s, {"chains": [{"steps": ["nobody"]}]}, actor(org, "admin"), T0)


async def test_queries(org, session_factory):
    sf = session_factory
    rid, _ = await new_request(sf, org, amount=86_000)
    rid2, _ = await new_request(sf, org, who="lisi", amount=1_000)
    async with sf() as s:
        mine = await sm.pending_for(s, org["lijingli"], T0)
        assert [r.id for r, _ in mine] == [rid, rid2]
        assert await sm.pending_for(s, org["wangzong"], T0) == []
        assert [r.id for r in await sm.requests_of(s, org["zhangsan"])] == [rid]
        c = await sm.find_customer(s, "华东精密")
        assert c is not None and c.id == org.customer_id
        assert (await sm.find_customer(s, "精密")).id == org.customer_id
        assert await sm.find_customer(s, "不存在") is None
