"""CSV import into the local registry (``fieldbot registry-import file.csv``).

Headers in Chinese or English: 企业名称/name, 统一社会信用代码/credit_code, 法定代表人/legal_rep,
地址/address, 登记状态/status, 注册资本/registered_capital (name and credit code required).
UTF-8 (with or without BOM) or GB18030, as Excel in China saves it. Each row's credit code is
checked (18 characters, GB 32100-2015 check character); a bad row is reported with its line
number and skipped, the good rows are upserted by credit code (a later row with the same code
wins), all in one transaction."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from integrations.registry.local import upsert
from sales.credit_code import clean, problem

HEADERS = {
    "name": ("企业名称", "name", "公司名称", "名称"),
    "credit_code": ("统一社会信用代码", "credit_code", "信用代码"),
    "legal_rep": ("法定代表人", "legal_rep", "法人"),
    "address": ("地址", "address", "注册地址"),
    "status": ("登记状态", "status", "经营状态"),
    "registered_capital": ("注册资本", "registered_capital"),
}
REQUIRED = ("name", "credit_code")


class RegistryImportError(ValueError):
    """The file as a whole cannot be imported (no usable header, unreadable)."""


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    def lines(self) -> list[str]:
        out = [f"导入 / imported: {self.created} 新增 / new, {self.updated} 更新 / updated,"
               f" {len(self.errors)} 错误 / rejected"]
        out += [f"第 {n} 行 / line {n}: {msg}" for n, msg in self.errors]
        return out


def decode(data: bytes) -> str:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise RegistryImportError("文件编码无法识别 / not UTF-8 or GB18030")


def _columns(header: list[str]) -> dict[str, int]:
    names = {h.strip().lower(): i for i, h in enumerate(header)}
    cols: dict[str, int] = {}
    for key, aliases in HEADERS.items():
        for alias in aliases:
            if alias.lower() in names:
                cols[key] = names[alias.lower()]
                break
    missing = [HEADERS[k][0] + "/" + k for k in REQUIRED if k not in cols]
    if missing:
        raise RegistryImportError(f"缺少列 / missing columns: {', '.join(missing)}")
    return cols


def parse(text: str) -> tuple[list[tuple[int, dict[str, str]]], list[tuple[int, str]]]:
    """(line number, row) for the good rows, (line number, reason) for the bad ones."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise RegistryImportError("文件为空 / empty file") from None
    cols = _columns(header)
    good: list[tuple[int, dict[str, str]]] = []
    bad: list[tuple[int, str]] = []
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        row = {k: (cells[i].strip() if i < len(cells) else "") for k, i in cols.items()}
        row["credit_code"] = clean(row["credit_code"])
        if not row["name"]:
            bad.append((line, "缺少企业名称 / no company name"))
            continue
        why = problem(row["credit_code"])
        if why:
            bad.append((line, why))
            continue
        good.append((line, row))
    return good, bad


async def import_csv(engine: AsyncEngine, data: bytes | str,
                     now: datetime | None = None) -> ImportReport:
    """Import a registry CSV (bytes as read from the file, or text); see the module doc."""
    good, bad = parse(decode(data) if isinstance(data, bytes) else data)
    report = ImportReport(errors=bad)
    seen: set[str] = set()
    async with AsyncSession(engine, expire_on_commit=False) as session:
        for _line, row in good:
            created = await upsert(session, now=now, **row)
            if created:
                report.created += 1
            elif row["credit_code"] not in seen:
                report.updated += 1
            seen.add(row["credit_code"])
        await session.commit()
    return report
