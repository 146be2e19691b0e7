"""Validation of rule documents that explains every mistake in words.

The real pydantic schema (``AlertRules`` / ``ApprovalRules``) decides; this module only turns
its errors into field-labelled Chinese sentences for the console. The policy checks (a red
threshold below the yellow one, weights not summing to 100 %, a "25:00" digest time, a zero
the health score would divide by) live in the schemas themselves (``config.rule_checks``), so
TOML and the chat command are refused the same way; their error carries the per-field list
this module shows. Never a stack trace.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from config.rule_checks import POLICY_ERROR
from webapp.rules_forms import ALERT_FIELDS, STAGES, approval_fields, model_for

# -- validation -----------------------------------------------------------------------------
_WORDS = {
    "int_parsing": "必须是整数", "int_from_float": "必须是整数", "int_type": "必须是整数",
    "float_parsing": "必须是数字", "float_type": "必须是数字", "missing": "缺少这一项",
    "extra_forbidden": "不认识的字段（拼写错误？）", "time_parsing": "时间格式应为 HH:MM",
    "time_type": "时间格式应为 HH:MM", "bool_parsing": "必须是 true 或 false",
    "bool_type": "必须是 true 或 false", "list_type": "必须是列表 […]",
    "dict_type": "必须是对象 {…}", "model_type": "必须是对象 {…}", "string_type": "必须是文字",
    "finite_number": "必须是有限的数字",
}
_MORE_LABELS = {  # fields the structured form does not show (JSON editor only)
    "health.response_full_days": "响应满分天数", "health.response_zero_days": "响应零分天数",
    "health.volume_full_score": "满分交易额", "digest.top_items": "日报条目数",
    "max_items_per_card": "每张卡片最多条目",
}


def label_of(key: str, path: str) -> str:
    for f in ALERT_FIELDS if key == "alerts" else approval_fields({}):
        if f.path == path:
            return f.label
    parts = path.split(".")
    if key == "approvals" and parts[0] in ("chains", "extra") and len(parts) > 1 \
            and parts[1].isdigit():
        title = "基础审批链" if parts[0] == "chains" else "追加审批人"
        rest = ".".join(parts[2:])
        return f"{title} 第 {int(parts[1]) + 1} 条" + (f" · {rest}" if rest else "")
    if parts[0] == "routes" and len(parts) > 1 and parts[1].isdigit():
        rest = ".".join(parts[2:])
        return f"提醒路由 第 {int(parts[1]) + 1} 条" + (f" · {rest}" if rest else "")
    if parts[:2] == ["stale", "per_stage"] and len(parts) > 2:
        return f"{STAGES.get(parts[2], parts[2])}阶段" + (
            {"yellow_days": "黄色阈值", "red_days": "红色阈值"}.get(parts[3], parts[3])
            if len(parts) > 3 else "")
    if path == "health.weights":
        return "健康分权重"
    if parts[0] == "schedule" and len(parts) == 2:
        return f"定时任务「{parts[1]}」时间"
    return _MORE_LABELS.get(path) or path or "规则"


def _shown(v: Any) -> str:
    if isinstance(v, dict | list):
        return ""
    text = str(v)
    return f"（现在「{text[:40]}」）"


def explain(key: str, exc: ValidationError) -> list[tuple[str, str]]:
    """pydantic's errors as (field, "label：what is wrong (what was given)")."""
    out = []
    for e in exc.errors(include_url=False):
        path = ".".join(str(p) for p in e["loc"])
        kind = e["type"]
        if kind == POLICY_ERROR:
            out += [_policy(key, path, p) for p in (e.get("ctx") or {}).get("problems", ())]
            continue
        if kind == "value_error":
            words = str(e["msg"]).removeprefix("Value error, ")
        elif kind == "literal_error":
            words = "必须是以下之一：" + str((e.get("ctx") or {}).get("expected", ""))
        else:
            words = _WORDS.get(kind, str(e["msg"]))
        out.append((path, f"{label_of(key, path)}：{words}{_shown(e.get('input'))}"))
    return out


def _join(base: str, rel: str) -> str:
    return f"{base}.{rel}" if base and rel else base or rel


def _policy(key: str, base: str, problem: dict[str, Any]) -> tuple[str, str]:
    """One schema policy problem: a whole sentence, or words after the label of a field (or
    of the rule it sits in, e.g. "提醒路由 第 1 条")."""
    path = _join(base, problem["field"])
    if problem["label"] is None:
        return path, problem["zh"]
    return path, f"{label_of(key, _join(base, problem['label']))}：{problem['zh']}"


def validate(key: str, doc: dict[str, Any]) -> tuple[BaseModel | None, list[tuple[str, str]]]:
    """The rule set, or the reasons it is refused."""
    data = {k: v for k, v in doc.items() if k != "version"}
    try:
        return model_for(key).model_validate(data), []
    except ValidationError as exc:
        return None, explain(key, exc)
    except (ValueError, TypeError, KeyError, OSError) as exc:  # a validator's own bug
        return None, [("", f"规则无效：{exc}")]
