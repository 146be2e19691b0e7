"""The rule documents an admin edits: which fields the structured form shows, how a form or a
JSON text becomes a document (and back), and the diff between two versions. Validation is in
``webapp.rules_check``. Errors are ``(field path, message)`` pairs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from config.alert_rules import AlertRules
from config.rules import ApprovalRules

KEYS = ("alerts", "approvals")
TITLES = {"alerts": "提醒规则 Alert rules", "approvals": "审批规则 Approval rules"}
STAGES = {"lead": "线索", "qualified": "已确认", "proposal": "方案", "negotiation": "谈判"}
WEIGHTS = {"volume": "交易规模", "timeliness": "付款及时性", "response": "响应速度",
           "stability": "需求稳定性", "strategic": "战略评级"}
ALERT_KINDS = ("stale", "overdue", "dormant", "health", "digest", "*")
FOLDED = ("按阶段", "提醒路由")  # sections shown folded unless they hold a mistake


@dataclass(frozen=True)
class FormField:
    path: str  # dotted path in the document; list indexes are numbers
    label: str
    # int | optint | float | optfloat | percent | intlist | strlist | lines | time | opttime |
    # str | optstr (blank = null)
    kind: str
    section: str = ""
    choices: tuple[str, ...] = ()  # shown as a select


_OV, _HS, _DQ, _HR = ("逾期回款 Overdue", "健康分 Health score", "日报与免打扰 Digest & quiet",
                      "工作时间 Hours")


def _alert_fields() -> list[FormField]:
    f = [FormField("stale.yellow_days", "停滞黄色阈值（天）", "int", "停滞商机 Stale deals"),
         FormField("stale.red_days", "停滞红色阈值（天）", "int", "停滞商机 Stale deals"),
         FormField("stale.cooldown_days", "停滞提醒冷却（天）", "int", "停滞商机 Stale deals")]
    for s, name in STAGES.items():
        f += [FormField(f"stale.per_stage.{s}.yellow_days", f"{name}阶段黄色阈值（天，可空）",
                        "optint", "按阶段 Per stage"),
              FormField(f"stale.per_stage.{s}.red_days", f"{name}阶段红色阈值（天，可空）",
                        "optint", "按阶段 Per stage")]
    f += [FormField("overdue.ladder", "逾期提醒阶梯（天，逗号分隔）", "intlist", _OV),
          FormField("overdue.red_from", "逾期红色起点（天）", "int", _OV),
          FormField("overdue.cooldown_days", "逾期提醒冷却（天）", "int", _OV),
          FormField("dormant.days", "休眠客户：无互动天数", "int", "休眠客户 Dormant")]
    f += [FormField(f"health.weights.{k}", f"健康分权重 · {v}（%）", "percent",
                    _HS) for k, v in WEIGHTS.items()]
    f += [FormField("health.grade_a", "A 级分数线", "float", _HS),
          FormField("health.grade_b", "B 级分数线", "float", _HS),
          FormField("health.alert_below", "健康度预警线（分）", "float", _HS),
          FormField("digest.time", "日报发送时间（HH:MM）", "time", _DQ),
          FormField("quiet_hours.start", "免打扰开始（HH:MM，两项都空 = 不设免打扰）", "opttime",
                    _DQ),
          FormField("quiet_hours.end", "免打扰结束（HH:MM，两项都空 = 不设免打扰）", "opttime",
                    _DQ)]
    return f


def approval_fields(doc: dict[str, Any]) -> list[FormField]:
    """The timers and working hours, then each chain rule's condition and steps (the amount
    boundaries are what admins change most)."""
    f = [FormField("remind_after_h", "未处理多少工作小时后提醒", "float", "时限 Timers"),
         FormField("escalate_after_h", "未处理多少工作小时后升级", "float", "时限 Timers"),
         FormField("max_escalations", "最多升级次数", "int", "时限 Timers"),
         FormField("work_days", "工作日（0=周一 … 6=周日，逗号分隔）", "intlist", _HR),
         FormField("work_start", "上班时间", "time", _HR),
         FormField("work_end", "下班时间", "time", _HR),
         FormField("quiet_start", "免打扰开始", "time", _HR),
         FormField("quiet_end", "免打扰结束", "time", _HR),
         FormField("reject_reasons", "驳回理由（每行一个，1–5 个）", "lines", "驳回 Reject")]
    for part, title in (("chains", "基础审批链"), ("extra", "追加审批人")):
        for i, _rule in enumerate(doc.get(part) or []):
            sec = f"{title} 第 {i + 1} 条"
            f += [FormField(f"{part}.{i}.when.kinds", f"{sec} · 类型（逗号分隔，* = 全部）",
                            "strlist", sec),
                  FormField(f"{part}.{i}.when.amount_gte", f"{sec} · 金额 ≥（可空）", "optfloat",
                            sec),
                  FormField(f"{part}.{i}.when.amount_lt", f"{sec} · 金额 <（可空）", "optfloat",
                            sec),
                  FormField(f"{part}.{i}.when.discount_gt", f"{sec} · 折扣 > %（可空）",
                            "optfloat", sec),
                  FormField(f"{part}.{i}.steps", f"{sec} · 审批角色（逗号分隔）", "strlist", sec)]
    return f


ALERT_FIELDS = _alert_fields()


def route_fields(doc: dict[str, Any]) -> list[FormField]:
    """One row per alert route (adding or removing routes is done in the JSON editor)."""
    out = []
    routes = doc.get("routes") if isinstance(doc.get("routes"), list) else []
    for i, _r in enumerate(routes):
        sec = f"提醒路由 第 {i + 1} 条 Route {i + 1}"
        out += [FormField(f"routes.{i}.alert", f"第 {i + 1} 条 · 提醒类型", "str", sec,
                          ALERT_KINDS),
                FormField(f"routes.{i}.severity", f"第 {i + 1} 条 · 级别", "str", sec,
                          ("*", "info", "yellow", "red")),
                FormField(f"routes.{i}.team_id", f"第 {i + 1} 条 · 仅团队编号（可空）", "optstr",
                          sec),
                FormField(f"routes.{i}.region", f"第 {i + 1} 条 · 仅区域（可空）", "optstr", sec),
                FormField(f"routes.{i}.to", f"第 {i + 1} 条 · 发给（owner, manager, team_chat, "
                                            "finance）", "strlist", sec)]
    return out


def fields_for(key: str, doc: dict[str, Any]) -> list[FormField]:
    return ALERT_FIELDS + route_fields(doc) if key == "alerts" else approval_fields(doc)


# -- documents ------------------------------------------------------------------------------
def model_for(key: str) -> type[BaseModel]:
    return AlertRules if key == "alerts" else ApprovalRules


def dump(model: BaseModel) -> dict[str, Any]:
    """The stored form of a rule set: the whole document (JSON types), no version field (the
    version is the row's)."""
    return model.model_dump(mode="json", exclude={"version"})


def get_path(doc: Any, path: str) -> Any:
    cur = doc
    for part in path.split("."):
        if isinstance(cur, list):
            i = int(part)
            cur = cur[i] if i < len(cur) else None
        elif isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
    return cur


def set_path(doc: Any, path: str, value: Any) -> None:
    parts = path.split(".")
    cur = doc
    for i, part in enumerate(parts[:-1]):
        nxt: Any = [] if parts[i + 1].isdigit() else {}
        if isinstance(cur, list):
            cur = cur[int(part)]
        else:
            if not isinstance(cur.get(part), dict | list):
                cur[part] = nxt
            cur = cur[part]
    last = parts[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    elif value is _DROP:
        cur.pop(last, None)
    else:
        cur[last] = value


_DROP = object()


def num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def display(field: FormField, doc: dict[str, Any]) -> str:
    """A document value as the form shows it."""
    v = get_path(doc, field.path)
    if v is None:
        return ""
    if field.kind == "percent":
        return num(round(float(v) * 100, 4))
    if field.kind in ("intlist", "strlist"):
        return ", ".join(str(x) for x in v)
    if field.kind == "lines":
        return "\n".join(str(x) for x in v)
    if field.kind in ("time", "opttime"):
        return str(v)[:5]
    if isinstance(v, float):
        return num(v)
    return str(v)


def form_values(key: str, doc: dict[str, Any]) -> dict[str, str]:
    return {f.path: display(f, doc) for f in fields_for(key, doc)}


def apply_form(key: str, base: dict[str, Any], form: dict[str, str]
               ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The base document with the form's fields written in; conversion mistakes are errors
    (type mistakes the schema would catch are left to it, so its words are used)."""
    doc = json.loads(json.dumps(base))
    errors: list[tuple[str, str]] = []
    for f in fields_for(key, base):
        if f.path not in form:
            continue
        raw = form[f.path].strip()
        if f.kind in ("optint", "optfloat", "opttime", "optstr") and raw == "":
            value: Any = None if f.kind in ("optfloat", "optstr") else _DROP
        elif raw == "" and f.kind not in ("lines",):
            errors.append((f.path, f"{f.label}：必填，不能为空"))
            continue
        elif f.kind == "percent":
            try:
                value = float(raw) / 100
            except ValueError:
                errors.append((f.path, f"{f.label}：必须是数字（现在「{raw}」）"))
                continue
        elif f.kind in ("intlist", "strlist"):
            value = [x.strip() for x in raw.replace("，", ",").split(",") if x.strip()]
        elif f.kind == "lines":
            value = [x.strip() for x in raw.splitlines() if x.strip()]
        else:
            value = raw
        set_path(doc, f.path, value)
    if key == "alerts":
        _tidy_stages(doc, errors)
        _tidy_quiet(doc, errors)
    return doc, errors


def _tidy_quiet(doc: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    """Both quiet-hour times blank = no quiet hours; one blank is a mistake."""
    q = doc.get("quiet_hours")
    if not isinstance(q, dict):
        return
    has = [k for k in ("start", "end") if k in q]
    if not has:
        doc["quiet_hours"] = None
    elif len(has) == 1:
        errors.append(("quiet_hours", "免打扰：开始和结束时间要同时填写（或都留空 = 不设免打扰）"))


def _tidy_stages(doc: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    """A stage override needs both thresholds; one with neither is removed."""
    stages = (doc.get("stale") or {}).get("per_stage") or {}
    for s in list(stages):
        t = stages[s]
        if not isinstance(t, dict):
            continue
        if not t:
            del stages[s]
        elif len(t) == 1:
            errors.append((f"stale.per_stage.{s}",
                           f"{STAGES.get(s, s)}阶段：黄色和红色阈值要同时填写（或都留空）"))


def parse_json(text: str) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [("json", f"JSON 格式错误：第 {exc.lineno} 行第 {exc.colno} 列，{exc.msg}")]
    if not isinstance(doc, dict):
        return None, [("json", "JSON 顶层必须是一个对象 {…}")]
    return doc, []


# -- diffs ----------------------------------------------------------------------------------
def _flat(doc: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(doc, dict):
        out: dict[str, str] = {}
        for k, v in doc.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(doc, list) and doc and all(isinstance(x, dict) for x in doc):
        out = {}
        for i, v in enumerate(doc):  # routes, chains: per entry, so a diff names the field
            out.update(_flat(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: json.dumps(doc, ensure_ascii=False, sort_keys=True)}


def diff(old: dict[str, Any] | None, new: dict[str, Any], limit: int = 30) -> list[str]:
    """``path: old → new`` for every leaf that changed (lists compare whole)."""
    a, b = _flat(old or {}), _flat(new)
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            lines.append(f"{k}: {a.get(k, '—')} → {b.get(k, '—')}")
    return lines[:limit] + ([f"…另有 {len(lines) - limit} 处"] if len(lines) > limit else [])
