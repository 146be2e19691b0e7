"""Import and export on the data page: every kind of bad file gives a (row, column, reason)
report and writes nothing; good CSV (UTF-8, BOM, GBK) and .xlsx files import in one go; a
50k-row customers file imports in < 10 s on SQLite; exports round-trip into an empty
database; only an admin imports, a rep cannot export."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import re
import time
from datetime import UTC, date, datetime

import aiohttp
import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import text
from sqlmodel import Session

from simulator.demo import start_demo
from storage.db import async_engine, sync_engine
from storage.migrate import upgrade
from storage.models import User
from tests.webapp.conftest import WebClient
from webapp import cells
from webapp.exporter import export_rows
from webapp.importer import KINDS, run_import
from webapp.tabular import (
    FORMULA_START,
    TableError,
    escape,
    read_table,
    unescape,
    write_csv,
    write_xlsx,
)

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py

COUNTS = ("customers", "customer_aliases", "contacts", "deals", "invoices")


def counts(web) -> dict[str, int]:
    return {t: web.sql(f"SELECT count(*) FROM {t}")[0][0] for t in COUNTS}  # noqa: S608


def csv_bytes(rows: list[list[object]], *, bom: bool = False, encoding: str = "utf-8") -> bytes:
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode(encoding)


def problems(page: str) -> list[tuple[str, str, str]]:
    """The report table's rows: (row, column, reason)."""
    table = page.split('class="problems"', 1)[1]
    return [tuple(html.unescape(c) for c in m) for m in re.findall(
        r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", table)]


async def upload(c, kind: str, content: bytes, filename: str = "data.csv"):
    form = aiohttp.FormData()
    form.add_field("_csrf", c.csrf)
    form.add_field("kind", kind)
    form.add_field("file", content, filename=filename, content_type="application/octet-stream")
    async with c.http.post("/app/data/import", data=form) as r:
        return r.status, await r.text()


async def admin(web):
    c = await web.client().login("admin")
    await c.page("/app/data")
    return c


async def test_customers_csv_imports_with_aliases_and_audit(web):
    c = await admin(web)
    before = counts(web)
    body = csv_bytes([
        ["name", "short_name", "region", "owner", "aliases", "tags", "strategic_rating"],
        ["无锡太湖机械有限公司", "太湖机械", "华东区", "张三", "太湖;太湖机械", "制造；重点", 4],
        ["温州瓯江阀门厂", "", "华东区", "", "", "", ""],
    ], bom=True)
    status, page = await upload(c, "customers", body)
    assert status == 200, page[-3000:]
    assert "导入成功" in page and "customers 2" in page
    after = counts(web)
    assert after["customers"] == before["customers"] + 2
    assert after["customer_aliases"] == before["customer_aliases"] + 2
    row = web.sql("SELECT c.short_name, u.name, c.tags, c.strategic_rating FROM customers c "
                  "JOIN users u ON u.id = c.owner_id WHERE c.name = '无锡太湖机械有限公司'")
    assert [(*r[:2], json.loads(r[2]), r[3]) for r in row] == [
        ("太湖机械", "张三", ["制造", "重点"], 4)]
    assert web.sql("SELECT strategic_rating, owner_id FROM customers "
                   "WHERE name = '温州瓯江阀门厂'") == [(3, None)]
    audit = web.sql("SELECT action, entity, detail FROM audit_log WHERE action LIKE 'data.%'")
    assert len(audit) == 1 and audit[0][:2] == ("data.import", "customers")
    assert '"customers": 2' in audit[0][2]


async def test_wrong_columns_are_named_with_the_expected_ones(web):
    c = await admin(web)
    before = counts(web)
    status, page = await upload(c, "deals", csv_bytes([
        ["customer", "titel", "stage", "colour"], ["华东精密零部件有限公司", "x", "lead", "red"]]))
    assert status == 422
    found = problems(page)
    cols = {p[1]: p[2] for p in found}
    assert "titel" in cols and "colour" in cols and "title" in cols  # unknown ×2, missing
    assert "expected: customer, title, stage" in cols["titel"]
    assert "missing column" in cols["title"]
    assert all(p[0] == "1" for p in found)  # header problems are on row 1
    assert counts(web) == before
    assert web.sql("SELECT action FROM audit_log WHERE action LIKE 'data.%'") == [
        ("data.import.rejected",)]


async def test_every_bad_cell_is_reported_and_nothing_imported(web):
    c = await admin(web)
    before = counts(web)
    header = ["customer", "title", "stage", "amount", "owner", "last_activity_at"]
    rows = [header,
            ["华东精密零部件有限公司", "新商机一", "lead", "1,000", "张三", "2026/12/1"],  # ok
            ["华东精密零部件有限公司", "新商机二", "closing", "abc", "nobody", "2026-13-01"],
            ["不存在的客户", "新商机三", "lead", "", "", ""],
            ["华东精密零部件有限公司", "", "lead", "-5", "", "yesterday"],
            ["华东精密零部件有限公司", "新商机一", "lead", "1e13", "", ""],  # dup of row 2
            ["华东精密零部件有限公司", "自动化产线改造", "won", "1", "", ""]]  # in the DB
    status, page = await upload(c, "deals", csv_bytes(rows))
    assert status == 422
    found = set(problems(page))
    want = {("3", "stage"), ("3", "amount"), ("3", "owner"), ("3", "last_activity_at"),
            ("4", "customer"), ("5", "title"), ("5", "amount"), ("5", "last_activity_at"),
            ("6", "title"), ("6", "amount"), ("7", "title")}
    assert {(r, col) for r, col, _ in found} == want
    reasons = {(r, col): why for r, col, why in found}
    assert "unknown stage" in reasons[("3", "stage")] and "negotiation" in reasons[("3", "stage")]
    assert "not a date" in reasons[("3", "last_activity_at")]
    assert "duplicate of row 2" in reasons[("6", "title")]
    assert "already exists" in reasons[("7", "title")]
    assert "required" in reasons[("5", "title")]
    assert "unknown customer" in reasons[("4", "customer")]
    assert "11 个问题" in page or "11 problem" in page
    assert counts(web) == before


async def test_customer_positions_import_with_their_coordinate_system(web):
    """Coordinates come with a new customer or, for existing ones, as a positions file; the
    system is named (WGS-84 / GCJ-02 in the ways people write them), never guessed; a bad
    row writes nothing."""
    c = await admin(web)
    status, page = await upload(c, "customers", csv_bytes([
        ["name", "region", "lat", "lng", "coord_system"],
        ["坐标新客户甲", "华东区", "31.2304", "121.4737", "高德"],
        ["坐标新客户乙", "华东区", "", "", ""]]))
    assert status == 200 and "导入成功" in page, page[-2000:]
    assert web.sql("SELECT name, lat, lng, coord_system FROM customers WHERE name LIKE "
                   "'坐标新客户%' ORDER BY name") == [
        ("坐标新客户乙", None, None, ""), ("坐标新客户甲", 31.2304, 121.4737, "gcj02")]
    before = web.sql("SELECT id, lat, lng, coord_system FROM customers ORDER BY id")
    status, page = await upload(c, "positions", csv_bytes([
        ["customer", "lat", "lng", "coord_system"],
        ["坐标新客户乙", "95", "121.4", "wgs84"],  # latitude out of range
        ["坐标新客户甲", "31.2", "", "gps"],  # no longitude
        ["坐标新客户甲", "31.2", "121.4", "bd09"],  # a system we do not convert (duplicate too)
        ["查无此客户", "31.2", "121.4", "wgs84"]]))
    found = problems(page)
    assert ("2", "lat") == found[0][:2] and "-90" in found[0][2]
    assert ("3", "lng") == found[1][:2]
    assert {("4", "customer"), ("4", "coord_system"), ("5", "customer")} <= {
        r[:2] for r in found}
    assert web.sql("SELECT id, lat, lng, coord_system FROM customers ORDER BY id") == before
    status, page = await upload(c, "positions", csv_bytes([
        ["customer", "lat", "lng", "coord_system"],
        ["坐标新客户乙", "30.25", "120.1551", "WGS-84"],
        ["坐标新客户甲", "31.23", "121.47", "gps"]]))
    assert status == 200 and "positions 2" in page, page[-2000:]
    assert web.sql("SELECT name, lat, lng, coord_system FROM customers WHERE name LIKE "
                   "'坐标新客户%' ORDER BY name") == [
        ("坐标新客户乙", 30.25, 120.1551, "wgs84"), ("坐标新客户甲", 31.23, 121.47, "wgs84")]
    audit = web.sql("SELECT detail FROM audit_log WHERE action = 'data.import' "
                    "AND entity = 'positions'")
    assert len(audit) == 1 and '"positions": 2' in audit[0][0]


async def test_customers_import_with_address_and_a_checked_credit_code(web):
    c = await admin(web)
    status, page = await upload(c, "customers", csv_bytes([
        ["name", "address", "credit_code"],
        ["地址客户甲", "杭州市西湖区文三路100号", "91330106ma2h5y3k0f"],
        ["地址客户乙", "", "91330106MA2H5Y3K0X"]]))  # a wrong check character
    assert problems(page) == [("3", "credit_code", "统一社会信用代码校验位错误 / wrong check "
                                                    "character")]
    assert web.sql("SELECT count(*) FROM customers WHERE name LIKE '地址客户%'") == [(0,)]
    status, page = await upload(c, "customers", csv_bytes([
        ["name", "address", "credit_code"],
        ["地址客户甲", "杭州市西湖区文三路100号", "91330106ma2h5y3k0f"]]))
    assert status == 200 and "导入成功" in page, page[-2000:]
    assert web.sql("SELECT address, credit_code FROM customers WHERE name = '地址客户甲'") == [
        ("杭州市西湖区文三路100号", "91330106MA2H5Y3K0F")]


async def test_invoice_numbers_unique_in_file_and_db(web):
    c = await admin(web)
    before = counts(web)
    rows = [["customer", "number", "amount", "paid_amount", "due_date", "deal"],
            ["广州珠江食品有限公司", "INV-NEW-1", "1000", "0", "2026-12-31", ""],
            ["广州珠江食品有限公司", "INV-NEW-1", "2000", "0", "2027-01-31", ""],
            ["广州珠江食品有限公司", "INV-2024-0001", "2000", "3000", "2027-01-31", "nope"]]
    status, page = await upload(c, "invoices", csv_bytes(rows))
    assert status == 422
    got = {(r, col) for r, col, _ in problems(page)}
    assert got == {("3", "number"), ("4", "number"), ("4", "paid_amount"), ("4", "deal")}
    assert counts(web) == before


async def test_a_bad_row_at_the_end_of_a_big_file_imports_nothing(web):
    c = await admin(web)
    before = counts(web)
    rows = [["name", "owner"]] + [[f"批量客户{i:05d}", "李四"] for i in range(5000)]
    rows.append(["批量客户最后一行", "查无此人"])
    status, page = await upload(c, "customers", csv_bytes(rows))
    assert status == 422
    assert problems(page) == [("5002", "owner", "没有这个用户 / unknown user: 查无此人")]
    assert counts(web) == before


async def test_gbk_csv_and_utf8_without_bom(web):
    c = await admin(web)
    before = counts(web)
    gbk = csv_bytes([["customer", "name", "title", "phone"],
                     ["南京金陵化工集团", "褚工", "安全主管", "13900000001"]], encoding="gbk")
    assert gbk.decode("gbk") and not _is_utf8(gbk)
    status, page = await upload(c, "contacts", gbk)
    assert status == 200, page[-2000:]
    assert web.sql("SELECT title FROM contacts WHERE name = '褚工'") == [("安全主管",)]
    plain = csv_bytes([["customer", "name", "title", "phone"],
                       ["南京金陵化工集团", "卫工", "设备主管", ""]])
    status, _ = await upload(c, "contacts", plain)
    assert status == 200
    assert counts(web)["contacts"] == before["contacts"] + 2


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


async def test_xlsx_with_date_cells(web):
    c = await admin(web)
    wb = Workbook()
    ws = wb.active
    ws.append(["Customer", "Title", "Stage", "Amount", "Owner", "Last_Activity_At", None])
    ws.append(["佛山顺德家电配件厂", "Excel 商机", "proposal", 123456.5, "赵六",
               datetime(2026, 11, 20, 9, 30), None])
    ws.append(["佛山顺德家电配件厂", "Excel 商机二", "lead", 1, "", 46357, None])  # serial
    ws.append([None] * 7)  # a blank row is skipped
    buf = io.BytesIO()
    wb.save(buf)
    status, page = await upload(c, "deals", buf.getvalue(), "deals.xlsx")
    assert status == 200, page[-2000:]
    rows = web.sql("SELECT title, amount, last_activity_at FROM deals WHERE title LIKE "
                   "'Excel%' ORDER BY title")
    assert rows[0][:2] == ("Excel 商机", 123456.5)
    assert rows[0][2].startswith("2026-11-20 01:30")  # 09:30 China time, stored as UTC
    assert rows[1][2].startswith("2026-11-30")  # Excel serial 46357 = 2026-12-01 00:00 CST
    bad = io.BytesIO()
    wb2 = Workbook()
    wb2.active.append(["customer", "number", "amount", "due_date"])
    wb2.active.append(["佛山顺德家电配件厂", "X-1", "not money", "someday"])
    wb2.save(bad)
    status, page = await upload(c, "invoices", bad.getvalue(), "inv.xlsx")
    assert status == 422
    assert {(r, col) for r, col, _ in problems(page)} == {("2", "amount"), ("2", "due_date")}
    status, page = await upload(c, "invoices", b"PK\x03\x04garbage", "broken.xlsx")
    assert status == 422 and "cannot be read" in html.unescape(page)


async def test_50k_customers_import_under_10_seconds(web):
    c = await admin(web)
    rows = [["name", "short_name", "region", "owner", "aliases", "tags", "strategic_rating",
             "external_id"]]
    rows += [[f"性能测试客户{i:05d}有限公司", f"性能{i:05d}", "华东区",
              "张三" if i % 2 else "李四",
              f"PT{i:05d};性能客户{i:05d}", "批量;测试", i % 5 + 1, f"PT-{i}"]
             for i in range(50_000)]
    body = csv_bytes(rows, bom=True)
    started = time.perf_counter()
    status, page = await upload(c, "customers", body)
    elapsed = time.perf_counter() - started
    server = re.search(r"\(([\d.]+)s\)", page)
    print(f"\n50k-row customers import ({len(body) / 1e6:.1f} MB): {elapsed:.2f} s from upload "
          f"to report page ({server.group(1) if server else '?'} s validate + insert)")
    assert status == 200, page[-2000:]
    assert elapsed < 10, f"50k-row import took {elapsed:.1f} s"
    assert web.sql("SELECT count(*) FROM customers WHERE name LIKE '性能测试客户%'") == [(50_000,)]
    assert web.sql("SELECT count(*) FROM customer_aliases WHERE alias LIKE 'PT%'") == [(50_000,)]


async def test_roles_import_admin_only_export_scoped(web):
    rep = await web.client().login("zhangsan")
    await rep.page("/app/data", status=403)
    await rep.page("/app/data/export?kind=customers&format=csv", status=403)
    status, _ = await upload(rep, "customers", csv_bytes([["name"], ["偷偷导入"]]))
    assert status == 403
    assert web.sql("SELECT count(*) FROM customers WHERE name = '偷偷导入'") == [(0,)]
    mgr = await web.client().login("lijingli")  # 华东区: zhangsan's and lisi's customers
    await mgr.page("/app/data", status=403)
    async with mgr.http.get("/app/data/export?kind=customers&format=csv") as r:
        assert r.status == 200
        names = {line.split(",")[0] for line in (await r.text()).splitlines()[1:]}
    east = {n for (n,) in web.sql(
        "SELECT c.name FROM customers c JOIN users u ON u.id = c.owner_id "
        "JOIN teams t ON t.id = u.team_id WHERE t.name = '华东区'")}
    assert names == east and len(east) == 6
    adm = await admin(web)
    await adm.page("/app/data/export?kind=bogus&format=csv", status=400)
    await adm.page("/app/data/export?kind=deals&format=pdf", status=400)
    async with adm.http.get("/app/data/template?kind=invoices") as r:
        assert (await r.read()) == ("\ufeff" + ",".join(KINDS["invoices"].columns)
                                    + "\r\n").encode()


TRICKY_NAMES = ('=HYPERLINK("http://x")', "-折扣客户", "@abc", "+86 客户", "'=已带引号")
TRICKY = {  # what people type: a formula-like name, an aliases list starting with =, a phone
    "customers": [["name", "aliases", "tags"],
                  [TRICKY_NAMES[0], "=a;b", "@重点"], [TRICKY_NAMES[1], "", "-1"],
                  [TRICKY_NAMES[2], "", ""], [TRICKY_NAMES[3], "", ""],
                  ["'" + TRICKY_NAMES[4], "", ""],  # a typed ' before = means text: dropped
                  ["'普通引号客户", "", ""]],  # a ' before anything else is kept
    "contacts": [["customer", "name", "title", "phone"],
                 [TRICKY_NAMES[0], "@钱工", "-", "+86 138 0000 0001"]],
    "deals": [["customer", "title", "stage", "amount"],
              [TRICKY_NAMES[1], "=SUM(1,2)", "lead", "0"]],
    "positions": [["customer", "lat", "lng", "coord_system"],
                  [TRICKY_NAMES[2], "31.2304", "121.4737", "GCJ-02"]],
}


async def test_export_round_trips_into_an_empty_database(web, db_url):
    """Export the seed, import the files into an empty database (SQLite and PostgreSQL) that
    has only the same people, export again: byte-identical files. Text Excel would run as a
    formula is exported with a leading ' and comes back as it was."""
    adm = await admin(web)
    for kind, rows in TRICKY.items():
        status, page = await upload(adm, kind, csv_bytes(rows))
        assert status == 200, (kind, page[-2000:])
    assert {n for (n,) in web.sql("SELECT name FROM customers")} >= set(TRICKY_NAMES)
    files: dict[str, bytes] = {}
    sheets: dict[str, list[list[str]]] = {}
    for kind in KINDS:
        async with adm.http.get(f"/app/data/export?kind={kind}&format=csv") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
            files[kind] = await r.read()
            assert files[kind].startswith(b"\xef\xbb\xbf")
        sheets[kind] = list(csv.reader(io.StringIO(files[kind].decode("utf-8-sig"))))
        assert not [v for row in sheets[kind] for v in row if v[:1] in FORMULA_START], kind
    customers = {row[0]: row for row in sheets["customers"][1:]}
    assert {"'" + n for n in TRICKY_NAMES} <= set(customers)
    assert customers["'" + TRICKY_NAMES[0]][4:6] == ["'=a;b", "'@重点"]  # aliases, tags
    assert customers["'" + TRICKY_NAMES[1]][5] == "'-1"
    assert "'普通引号客户" in customers  # not formula-like: written as it is
    assert ["'" + TRICKY_NAMES[0], "'@钱工", "'-", "'+86 138 0000 0001"] in sheets["contacts"]
    deal = next(row for row in sheets["deals"] if row[0] == "'-折扣客户")
    assert deal[1:5] == ["'=SUM(1,2)", "lead", "0", ""]  # the amount stays a plain number
    async with adm.http.get("/app/data/export?kind=customers&format=xlsx") as r:
        assert r.status == 200
        sheet = load_workbook(io.BytesIO(await r.read())).active
    xcells = [c for row in sheet.iter_rows() for c in row if c.value is not None]
    assert all(c.data_type != "f" for c in xcells)  # no formula cell, only text and numbers
    assert {"'" + n for n in TRICKY_NAMES} <= {c.value for c in xcells}
    async with adm.http.get("/app/data/export?kind=deals&format=xlsx") as r:
        assert r.status == 200 and (await r.read()).startswith(b"PK")
    async with adm.http.get("/app/data/export?kind=visits&format=csv") as r:
        assert r.status == 200
    assert sheets["positions"][1:] == [["'" + TRICKY_NAMES[2], "31.2304", "121.4737", "gcj02"]]
    assert customers["'" + TRICKY_NAMES[2]][8:11] == ["31.2304", "121.4737", "gcj02"]
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'data.export'") == [(8,)]
    await asyncio.to_thread(upgrade, db_url)
    eng = sync_engine(db_url)
    with Session(eng) as s:
        for name, role in web.sql("SELECT name, role FROM users ORDER BY id"):
            s.add(User(name=name, role=role))
        s.commit()
    aeng = async_engine(db_url)
    try:
        bad = files["customers"] + "最后一行的坏客户,,,查无此人\r\n".encode()
        report = await run_import(aeng, "customers", bad, "bad.csv", None)
        assert not report.ok and report.problem_count == 1
        async with aeng.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM customers"))).scalar() == 0
        for kind in KINDS:
            report = await run_import(aeng, kind, files[kind], f"{kind}.csv", None)
            assert report.ok, (kind, report.problems[:5])
        for kind in KINDS:
            async with aeng.connect() as conn:
                header, rows = await export_rows(conn, kind, None)
            assert write_csv(header, rows) == files[kind], kind
    finally:
        await aeng.dispose()
        eng.dispose()


async def test_upload_over_the_size_cap(tmp_path):
    stack = await start_demo("127.0.0.1", 0, tmp_path / "demo", web_max_upload_bytes=4096)
    c = WebClient(stack.bot_url)
    try:
        await c.login("admin")
        page = await c.page("/app/data")
        assert 'data-max-bytes="4096"' in page  # the page refuses it before uploading, too
        status, body = await upload(c, "customers", b"name\r\n" + b"x" * 10_000 + b"\r\n")
        assert status == 413
        assert "4096" in body or "too large" in body.lower() or "太大" in body
    finally:
        await c.close()
        await stack.stop()


def test_cells_and_tables_parse_what_spreadsheets_write():
    """The parsing rules on their own (no server): delimiters, encodings, dates, amounts."""
    def table(data: bytes):
        header, rows = read_table(data)
        return header, list(rows)

    # the header decides the delimiter; a ;-list in a cell is not one
    assert table(b"name\r\nA;B\r\n") == (["name"], [["A;B"]])
    assert table(b"name;owner\r\nX;Y\r\n") == (["name", "owner"], [["X", "Y"]])
    assert table("\ufeffname,aliases\n甲,a;b\n".encode()) == (["name", "aliases"],
                                                             [["甲", "a;b"]])
    assert table("name\n华东\n".encode("gbk"))[1] == [["华东"]]
    with pytest.raises(TableError):
        table(b"")
    with pytest.raises(TableError):
        table(b"\x00\x01\x02binary")
    assert cells.a_date("2026/12/1") == cells.a_date("2026-12-01") == date(2026, 12, 1)
    assert cells.a_date("2026年12月1日") == cells.a_date(46357.0) == date(2026, 12, 1)
    assert cells.a_datetime("2026-12-01 08:00") == datetime(2026, 12, 1, tzinfo=UTC)
    assert cells.a_datetime("2026-12-01T00:00:00Z") == datetime(2026, 12, 1, tzinfo=UTC)
    for bad in ("2026-02-30", "12/01/2026x", "", 0):
        with pytest.raises(cells.CellError):
            cells.a_date(bad)
    assert cells.number("¥1,200,000.50") == 1200000.5 and cells.number(3) == 3.0
    for bad in ("nan", "inf", "1e13", "-1", "abc", True):
        with pytest.raises(cells.CellError):
            cells.number(bad)
    assert cells.text(13800000001.0) == "13800000001"  # a phone typed into Excel
    assert cells.split_list("a; b；a ;;c") == ["a", "b", "c"]


def test_formula_escape_is_exact_and_leaves_numbers_alone():
    """Only text is escaped (a negative amount stays a number); unescape undoes exactly the
    escape, for any text, so the round trip is byte-exact."""
    body = write_csv(["name", "amount"], [["=1+1", -5], ["-5", -0.5], ["\t=x", 3],
                                          ["'=x", 0], ["'abc", 1], ["a=b", None]])
    assert body.decode("utf-8-sig").splitlines() == [
        "name,amount", "'=1+1,-5", "'-5,-0.5", "'\t=x,3", "''=x,0", "'abc,1", "a=b,"]
    for v in ("=x", "+x", "-x", "@x", "\tx", "\rx", "'=x", "''@x", "'x", "x", "", "'", "''"):
        assert unescape(escape(v)) == v
        assert escape(v)[:1] not in FORMULA_START
    assert escape(-5) == -5 and escape(None) is None
    assert unescape("'=x") == "=x" and unescape("'x") == "'x"
    header, rows = read_table(write_xlsx(["name", "amount"], [["=HYPERLINK(\"x\")", -5]]))
    assert list(rows) == [["'=HYPERLINK(\"x\")", -5]]
