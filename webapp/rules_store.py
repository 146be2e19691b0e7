"""Where rule sets live: versioned ``rules`` rows (``storage.models.Setting``), read the way
the jobs read them, and written only as new versions (never edited in place), each with an
``audit_log`` row in the same transaction.

Alert rules load like ``jobs.runner.AlertJobs.load_rules``: defaults ← ``[rules.alerts]`` ←
the latest ``alerts`` row. Approval rules load like the approval handlers
(``storage.approvals.current_rules``): the latest ``approvals`` row, else the TOML defaults.
A saved version holds the whole validated document, so what the admin previewed is exactly
what the jobs will use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import col, select

from config.alert_rules import load_alert_rules
from config.rules import load_rules
from storage import approvals as sm
from storage.models import AuditLog, Setting, User
from webapp.core import WebCtx
from webapp.rules_forms import diff, dump


def toml_rules(ctx: WebCtx, key: str) -> dict[str, Any]:
    return dict((ctx.settings.rules or {}).get(key) or {})


def defaults(ctx: WebCtx, key: str) -> BaseModel:
    """What applies with no stored version (built-in defaults under the TOML table)."""
    if key == "alerts":
        return load_alert_rules(toml_rules(ctx, key))
    return load_rules(toml_rules(ctx, key), 0)


async def latest(db, key: str) -> Setting | None:
    return (await db.exec(select(Setting).where(Setting.key == key)
                          .order_by(col(Setting.version).desc()).limit(1))).first()


async def current(ctx: WebCtx, db, key: str) -> tuple[BaseModel, int]:
    """The rules in force and their version (0 = defaults)."""
    if key == "approvals":
        rules = await sm.current_rules(db, toml_rules(ctx, key))
        return rules, rules.version
    row = await latest(db, key)
    return load_alert_rules(toml_rules(ctx, key), row.value if row else None), (
        row.version if row else 0)


async def versions(db, key: str) -> list[Setting]:
    return list((await db.exec(select(Setting).where(Setting.key == key)
                               .order_by(col(Setting.version).desc()))).all())


async def save_version(db, key: str, model: BaseModel, before: BaseModel, user: User,
                       action: str = "rules.update", **detail: Any) -> int:
    """Insert version N+1 and its audit row; the caller commits (a racing save with the same
    number hits the unique (key, version) and is refused by the caller)."""
    last = (await db.exec(select(func.max(Setting.version))
                          .where(Setting.key == key))).first() or 0
    version = int(last) + 1
    value, now = dump(model), datetime.now(UTC)
    db.add(Setting(key=key, version=version, value=value, created_by=user.id, created_at=now))
    db.add(AuditLog(at=now, actor_id=user.id, platform="web", action=action, entity="rules",
                    entity_id=f"{key}:{version}",
                    detail={"key": key, "version": version,
                            "changes": diff(dump(before), value), **detail}))
    await db.flush()
    return version
