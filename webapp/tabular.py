"""Spreadsheets as rows: read a CSV (UTF-8 with or without BOM, or GBK/GB18030 as Excel in
China saves it) or an .xlsx into a header and rows of cells; write CSV (UTF-8 with BOM, so Excel
opens it right) and .xlsx. No knowledge of what the columns mean: that is ``webapp.importer``.

Formula injection: a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR would be run
as a formula by Excel (``=HYPERLINK(...)`` in a customer name). Writing puts a ``'`` in front
of such text (OWASP's advice; numbers stay numbers), and ``unescape`` is what the importer
applies to undo exactly that, so export → import → export gives the same bytes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

XLSX_MAGIC = b"PK\x03\x04"
FORMULA_START = frozenset("=+-@\t\r")


class TableError(ValueError):
    """The file cannot be read as a table at all (not CSV/XLSX, undecodable, empty)."""


def decode_csv(data: bytes) -> str:
    """UTF-8 (BOM or not) first; a file that is not valid UTF-8 is GB18030 (a superset of
    GBK, which Excel writes for 'CSV' on a Chinese Windows)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise TableError("文件编码无法识别（请用 UTF-8 或 GBK 保存）/ The file is neither UTF-8 "
                         "nor GBK text.") from exc


def read_table(data: bytes, filename: str = "") -> tuple[list[str], Iterator[list[Any]]]:
    """(header, rows): the header as stripped strings; each row a list of cells (strings for
    CSV; str/int/float/date/datetime/None for xlsx). Blank rows are skipped by the caller."""
    if data.startswith(XLSX_MAGIC) or filename.lower().endswith(".xlsx"):
        return _read_xlsx(data)
    if b"\x00" in data[:4096]:
        raise TableError("这不是 CSV 或 .xlsx 文件 / This is not a CSV or .xlsx file.")
    text = decode_csv(data)
    # the delimiter is whichever the header row uses (column names never contain one); the
    # data rows cannot be sniffed: "a;b" in an aliases cell would look like a delimiter
    first = text.split("\n", 1)[0]
    delimiter = next((d for d in (",", "\t", ";") if d in first), ",")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise TableError("文件是空的 / The file is empty.") from None
    except csv.Error as exc:
        raise TableError(f"CSV 格式错误 / Malformed CSV: {exc}") from exc
    return [h.strip() for h in header], _guard(reader)


def _guard(reader: Iterable[list[str]]) -> Iterator[list[Any]]:
    try:
        yield from reader
    except csv.Error as exc:
        raise TableError(f"CSV 格式错误 / Malformed CSV: {exc}") from exc


def _read_xlsx(data: bytes) -> tuple[list[str], Iterator[list[Any]]]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows)
    except StopIteration:
        raise TableError("工作表是空的 / The worksheet is empty.") from None
    except Exception as exc:  # noqa: BLE001 - zip/xml errors of a broken file are many kinds
        raise TableError("无法读取这个 .xlsx 文件 / This .xlsx file cannot be read.") from exc
    names = ["" if h is None else str(h).strip() for h in header]
    while names and not names[-1]:
        names.pop()  # Excel often reports trailing empty columns

    def body() -> Iterator[list[Any]]:
        try:
            for row in rows:
                yield list(row)
        except Exception as exc:  # noqa: BLE001
            raise TableError("无法读取这个 .xlsx 文件 / This .xlsx file cannot be read.") from exc
        finally:
            wb.close()

    return names, body()


def escape(v: Any) -> Any:
    """A text cell a spreadsheet would read as a formula gets a leading ``'``; so does text
    that already looks escaped (``'=x`` → ``''=x``), so ``unescape`` is its exact inverse.
    Non-text cells (numbers: ``-5`` is an amount, not a formula) are returned unchanged."""
    if type(v) is str and v and (v[0] in FORMULA_START
                                 or (v[0] == "'" and v.lstrip("'")[:1] in FORMULA_START)):
        return "'" + v
    return v


def unescape(s: str) -> str:
    """Undo ``escape``: one leading ``'`` is dropped when (after any further ``'``) a formula
    character follows; any other text, ``'hello`` included, is kept as it is."""
    if s[:1] == "'" and s.lstrip("'")[:1] in FORMULA_START:
        return s[1:]
    return s


def _escaped(rows: Iterable[Sequence[Any]]) -> Iterator[list[Any]]:
    for row in rows:
        yield [escape(v) for v in row]


def write_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([escape(h) for h in header])
    w.writerows(_escaped(rows))
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


def write_xlsx(header: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "data"
               ) -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title)
    ws.append([escape(h) for h in header])
    for row in _escaped(rows):
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
