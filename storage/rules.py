"""The rules in force: the admin's latest stored version over the TOML table over defaults.

One reader for every user of the alert rules (the jobs, the dashboard, the deals page), so
they can never disagree about a threshold. Approval rules: ``storage.approvals.current_rules``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from config.alert_rules import AlertRules, load_alert_rules
from storage.models import Setting


async def latest_value(session, key: str) -> dict[str, Any] | None:
    """The newest stored version of ``key`` (None: nothing stored yet)."""
    conn = await session.connection()
    row = (await conn.execute(select(Setting.value).where(Setting.key == key)
                              .order_by(Setting.version.desc()).limit(1))).first()
    return row[0] if row else None


async def current_alert_rules(session, settings_rules: dict[str, Any] | None) -> AlertRules:
    """Defaults ← ``[rules.alerts]`` from settings (``settings_rules``) ← the latest row."""
    toml = (settings_rules or {}).get("alerts") or {}
    return load_alert_rules(toml, await latest_value(session, "alerts"))
