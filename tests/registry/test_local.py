"""The local registry on SQLite and PostgreSQL: CSV import (Chinese and English headers, bad
rows reported by line and skipped, upsert by credit code), exact and fuzzy lookup in one
indexed query."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from integrations.registry import build_registry
from integrations.registry.importer import RegistryImportError, import_csv
from integrations.registry.local import LocalRegistry
from storage.db import async_engine
from storage.migrate import upgrade
from storage.registry_models import RegistryEntryRow

NOW = datetime(2026, 6, 15, 2, 0, tzinfo=UTC)

CSV_ZH = """企业名称,统一社会信用代码,法定代表人,地址,登记状态,注册资本
上海浦江机电设备有限公司,91310115MA1K4F2D6R,王建国,上海市浦东新区张江路88号,存续,5000万人民币
杭州云帆物流有限公司,91330106MA2H5Y3K0F,赵云帆,杭州市西湖区文三路100号,吊销，未注销,200万人民币
坏代码公司,91330106MA2H5Y3K0G,某人,某地,存续,1万
,91320594MA1N8C7W3K,无名,某地,存续,1万
太短公司,9133010,某人,某地,存续,1万
浦江电器贸易有限公司,91440300MA5G9T7Q1Y,陈,深圳市南山区,注销,50万人民币
"""
CSV_EN = """name,credit_code,status,address
上海浦江机电设备有限公司,91310115ma1k4f2d6r,迁出,上海市闵行区新址1号
苏州恒信电子科技有限公司,91320594MA1N8C7W3K,在业,苏州工业园区星湖街328号
"""


@pytest.fixture
async def engine(db_url):
    upgrade(db_url)
    eng = async_engine(db_url)
    yield eng
    await eng.dispose()


async def rows(engine) -> list[RegistryEntryRow]:
    async with AsyncSession(engine) as s:
        return list((await s.execute(select(RegistryEntryRow).order_by(
            RegistryEntryRow.credit_code))).scalars().all())


async def test_import_reports_bad_rows_and_upserts(engine):
    report = await import_csv(engine, CSV_ZH.encode("utf-8-sig"), now=NOW)
    assert (report.created, report.updated) == (3, 0)
    assert [n for n, _ in report.errors] == [4, 5, 6]
    assert "校验位" in report.errors[0][1] and "名称" in report.errors[1][1]
    assert "18" in report.errors[2][1]
    assert any("第 4 行" in line for line in report.lines())
    got = {r.credit_code: r for r in await rows(engine)}
    assert set(got) == {"91310115MA1K4F2D6R", "91330106MA2H5Y3K0F", "91440300MA5G9T7Q1Y"}
    pj = got["91310115MA1K4F2D6R"]
    assert (pj.legal_rep, pj.status, pj.registered_capital) == ("王建国", "存续", "5000万人民币")
    assert (pj.normalized_name, pj.core_name, pj.core_head) == (
        "上海浦江机电设备有限公司", "浦江机电设备", "浦江")

    # English headers, GB18030 bytes, lower-case code: the same company is updated in place
    report = await import_csv(engine, CSV_EN.encode("gb18030"), now=NOW)
    assert (report.created, report.updated, report.errors) == (1, 1, [])
    got = {r.credit_code: r for r in await rows(engine)}
    assert len(got) == 4
    pj = got["91310115MA1K4F2D6R"]
    assert (pj.status, pj.address) == ("迁出", "上海市闵行区新址1号")
    assert pj.legal_rep == ""  # the column was not in that file: imported as empty


async def test_import_needs_the_name_and_code_columns(engine):
    with pytest.raises(RegistryImportError, match="credit_code"):
        await import_csv(engine, "企业名称,地址\n某公司,某地\n")


async def test_lookup_exact_then_fuzzy(engine, db_url):
    await import_csv(engine, CSV_ZH, now=NOW)
    reg = build_registry(type("S", (), {"registry_provider": "local"})(), engine)
    assert isinstance(reg, LocalRegistry)

    exact = await reg.lookup("上海 浦江机电设备（有限公司）")  # spaces/brackets normalised away
    assert exact is not None and exact.credit_code == "91310115MA1K4F2D6R"
    assert not exact.status_warning and exact.legal_rep == "王建国"
    # the sign says only the brand: the same core, not 浦江电器贸易 (same head, other core)
    core = await reg.lookup("浦江机电设备")
    assert core is not None and core.credit_code == "91310115MA1K4F2D6R"
    # one character misread by OCR
    fuzzy = await reg.lookup("杭州云帆物流有限公可")
    assert fuzzy is not None and fuzzy.name == "杭州云帆物流有限公司"
    assert fuzzy.status_warning and fuzzy.status == "吊销，未注销"
    closed = await reg.lookup("浦江电器贸易")
    assert closed is not None and closed.status == "注销" and closed.status_warning
    assert await reg.lookup("北京完全无关科技有限公司") is None
    assert await reg.lookup("") is None
    answer = await reg.check("北京完全无关科技有限公司")
    assert answer.available and answer.entry is None

    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if "registry_entries" in statement:
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        await reg.lookup("浦江机电设备")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 1 and "LIMIT" in statements[0].upper()


async def test_lookup_uses_the_indexes_on_sqlite(sqlite_url):
    upgrade(sqlite_url)
    eng = async_engine(sqlite_url)
    try:
        async with eng.connect() as conn:
            plan = (await conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT * FROM registry_entries WHERE normalized_name = ?"
                " OR core_head = ? LIMIT 50", ("a", "b"))).all()
        detail = " ".join(str(r[-1]) for r in plan)
        assert "ix_registry_entries_normalized_name" in detail
        assert "ix_registry_entries_core_head" in detail
    finally:
        await eng.dispose()


async def test_unavailable_database_is_reported_not_raised(tmp_path):
    eng = async_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")
    try:
        answer = await LocalRegistry(eng).check("杭州云帆物流有限公司")
        assert answer.entry is None and answer.available is False
    finally:
        await eng.dispose()


def test_cli_registry_import(tmp_path, monkeypatch, capsys):
    from bot.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("FIELDBOT_DATABASE_URL", url)
    monkeypatch.setenv("FIELDBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setattr("os.umask", lambda mask: 0o022)  # keep the test process's umask
    path = tmp_path / "registry.csv"
    path.write_text(CSV_ZH, encoding="utf-8")
    assert main(["registry-import", str(path)]) == 1  # some rows were rejected
    out = capsys.readouterr().out
    assert "3 新增" in out and "第 4 行" in out and "第 6 行" in out
    path.write_text(CSV_EN, encoding="utf-8")
    assert main(["registry-import", str(path)]) == 0
    assert "1 新增 / new, 1 更新" in capsys.readouterr().out
    assert main(["registry-import", str(tmp_path / "nope.csv")]) == 2
