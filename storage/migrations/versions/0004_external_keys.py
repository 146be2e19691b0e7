"""external keys for the ERP: customers/deals.external_id, payments.reference (issue 6)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (("customers", "external_id"), ("deals", "external_id"), ("payments", "reference"))


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, sqlmodel.sql.sqltypes.AutoString(),
                                          nullable=True))
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=True)


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
            batch_op.drop_column(column)
