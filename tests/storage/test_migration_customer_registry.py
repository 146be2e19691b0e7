"""Revision 0012: a customer created from a sign before it kept its credit code in a
"信用代码:<code>" tag; the revision moves the code into customers.credit_code and drops the
tag, leaving other tags and other customers alone (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

from alembic import command
from sqlalchemy import text

from storage.db import normalize, sync_engine
from storage.migrate import alembic_config


def test_the_credit_code_tag_moves_into_its_column(db_url):
    sync, _ = normalize(db_url)
    cfg = alembic_config(sync.render_as_string(hide_password=False))
    command.upgrade(cfg, "0011")
    eng = sync_engine(db_url)
    try:
        with eng.begin() as conn:
            for name, tags in (("杭州云帆物流有限公司", ["制造", "信用代码:91330106MA2H5Y3K0F"]),
                               ("普通客户", ["信用", "代码"])):
                conn.execute(text("INSERT INTO customers (name, short_name, region, tags, "
                                  "strategic_rating, created_at) VALUES (:n, '', '', :t, 3, "
                                  ":c)"), {"n": name, "t": json.dumps(tags, ensure_ascii=False),
                                           "c": "2027-01-31 23:00:00"})
        command.upgrade(cfg, "0012")
        with eng.connect() as conn:
            got = {n: (json.loads(t) if isinstance(t, str) else t, code, addr)
                   for n, t, code, addr in conn.execute(text(
                       "SELECT name, tags, credit_code, address FROM customers"))}
        assert got == {"杭州云帆物流有限公司": (["制造"], "91330106MA2H5Y3K0F", ""),
                       "普通客户": (["信用", "代码"], "", "")}
        command.downgrade(cfg, "0011")  # and back: the columns go
        with eng.connect() as conn:
            cols = conn.execute(text("SELECT * FROM customers")).keys()
        assert "credit_code" not in cols and "address" not in cols
    finally:
        eng.dispose()
