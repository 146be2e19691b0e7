"""customers.address and customers.credit_code (issue 16 §4): a customer created from a
storefront sign keeps the registry's address and 统一社会信用代码 (until now the code rode in a
"信用代码:<code>" tag, moved here by this revision); both import, export and go through the API.

Revision ID: 0012
Revises: 0011
"""
import json

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

STR = sqlmodel.sql.sqltypes.AutoString
TAG = "信用代码:"


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as b:
        b.add_column(sa.Column("address", STR(), nullable=False, server_default=""))
        b.add_column(sa.Column("credit_code", STR(), nullable=False, server_default=""))
        b.create_index(b.f("ix_customers_credit_code"), ["credit_code"], unique=False)
    move_tags()


def move_tags() -> None:
    """The old tag → the column (the tag itself is dropped). Idempotent."""
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, tags FROM customers WHERE CAST(tags AS TEXT) "
                                "LIKE :p"), {"p": f"%{TAG}%"}).all()
    for cid, raw in rows:
        tags = json.loads(raw) if isinstance(raw, str) else list(raw or [])
        codes = [t[len(TAG):] for t in tags if isinstance(t, str) and t.startswith(TAG)]
        if not codes:
            continue
        kept = [t for t in tags if not (isinstance(t, str) and t.startswith(TAG))]
        conn.execute(sa.text("UPDATE customers SET credit_code = :c, tags = :t WHERE id = :i"),
                     {"c": codes[0][:18], "t": json.dumps(kept, ensure_ascii=False), "i": cid})


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as b:
        b.drop_index(b.f("ix_customers_credit_code"))
        b.drop_column("credit_code")
        b.drop_column("address")
