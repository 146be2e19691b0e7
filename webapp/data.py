"""Data in and out: CSV / XLSX import of customers, contacts, deals and invoices with a
validation report and no partial import; export of the same (plus visits).

Who may do what: import is admin only. Export: admin / vp / finance get everything, a
manager their teams' records (``webapp.scope``), a rep gets 403 — a rep's own data is on their
pages, and a bulk download of customer lists is exactly what a leaving rep should not take.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from storage.models import AuditLog
from webapp.auth import require
from webapp.core import current_user, web_ctx
from webapp.exporter import EXPORT_KINDS, export_rows
from webapp.importer import KINDS, run_import
from webapp.render import error_page, render
from webapp.scope import visible_user_ids
from webapp.tabular import write_csv, write_xlsx

routes = web.RouteTableDef()
EXPORTERS = ("admin", "vp", "finance", "manager")


def _page(request: web.Request, status: int = 200, **values) -> web.Response:
    ctx = web_ctx(request)
    values.setdefault("report", None)
    values.setdefault("flash", "")
    values.setdefault("flash_kind", "ok")
    return render(request, "data.html", status=status, kinds=KINDS,
                  export_kinds=EXPORT_KINDS, max_bytes=ctx.settings.web_max_upload_bytes,
                  max_size=_size(ctx.settings.web_max_upload_bytes), **values)


def _size(n: int) -> str:
    return f"{n / 1048576:.0f} MB" if n >= 1048576 else f"{max(n // 1024, 1)} KB"


@routes.get("/app/data")
@require("admin")
async def data_page(request: web.Request) -> web.StreamResponse:
    return _page(request)


@routes.get("/app/data/template")
@require("admin")
async def template(request: web.Request) -> web.StreamResponse:
    """An empty file with just the header row, so nobody has to guess the column names."""
    kind = request.query.get("kind", "")
    if kind not in KINDS:
        return error_page(request, 400, "未知的数据类型 / Unknown kind.")
    return _download(write_csv(KINDS[kind].columns, []), f"{kind}-template.csv")


@routes.post("/app/data/import")
@require("admin")
async def import_file(request: web.Request) -> web.StreamResponse:
    ctx = web_ctx(request)
    form = await request.post()
    kind = str(form.get("kind", ""))
    upload = form.get("file")
    if kind not in KINDS:
        return _page(request, 400, flash="请选择数据类型 / Choose what the file holds.",
                     flash_kind="error")
    if not isinstance(upload, web.FileField):
        return _page(request, 400, flash="请选择一个文件 / Choose a file to upload.",
                     flash_kind="error")
    data = upload.file.read(ctx.settings.web_max_upload_bytes + 1)
    if len(data) > ctx.settings.web_max_upload_bytes:
        limit = _size(ctx.settings.web_max_upload_bytes)
        return _page(request, 413, flash=f"文件太大（上限 {limit}）/ The file is larger than "
                     f"the {limit} upload limit.", flash_kind="error")
    report = await run_import(ctx.engine, kind, data, upload.filename or "",
                              current_user(request).id)
    if report.ok:
        counts = ", ".join(f"{k} {v}" for k, v in report.inserted.items())
        return _page(request, report=report, flash=f"导入成功 / Imported: {counts} "
                     f"({report.seconds:.1f}s)")
    return _page(request, 422, report=report, flash=f"未导入任何数据：发现 {report.problem_count} "
                 f"个问题 / Nothing was imported: {report.problem_count} problem(s) found.",
                 flash_kind="error")


@routes.get("/app/data/export")
@require()
async def export(request: web.Request) -> web.StreamResponse:
    ctx = web_ctx(request)
    user = current_user(request)
    if user.role not in EXPORTERS:
        return error_page(request, 403, "你没有权限导出数据 / You are not allowed to export.")
    kind = request.query.get("kind", "")
    fmt = request.query.get("format", "csv")
    if kind not in EXPORT_KINDS or fmt not in ("csv", "xlsx"):
        return error_page(request, 400, "导出参数无效 / kind must be one of "
                          + ", ".join(EXPORT_KINDS) + "; format csv or xlsx.")
    async with ctx.session() as db:
        scope = await visible_user_ids(db, user)
    async with ctx.engine.connect() as conn:
        header, rows = await export_rows(conn, kind, scope)
    async with ctx.session() as db:
        db.add(AuditLog(actor_id=user.id, platform="web", action="data.export", entity=kind,
                        detail={"format": fmt, "rows": len(rows),
                                "scope": "all" if scope is None else "team"}))
        await db.commit()
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    if fmt == "xlsx":
        return _download(write_xlsx(header, rows, kind), f"{kind}-{stamp}.xlsx")
    return _download(write_csv(header, rows), f"{kind}-{stamp}.csv")


def _download(body: bytes, filename: str) -> web.Response:
    ctype = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
             if filename.endswith(".xlsx") else "text/csv")
    resp = web.Response(body=body, content_type=ctype,
                        charset="utf-8" if ctype == "text/csv" else None)
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp
