"""The local business registry (issue 16 §4): registry_entries, one row per company keyed by
its 统一社会信用代码.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_entries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("normalized_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("core_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("core_head", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("credit_code", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("legal_rep", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("registered_capital", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_registry_entries_normalized_name", "registry_entries",
                    ["normalized_name"])
    op.create_index("ix_registry_entries_core_head", "registry_entries", ["core_head"])
    op.create_index("ix_registry_entries_credit_code", "registry_entries", ["credit_code"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ix_registry_entries_credit_code", "registry_entries")
    op.drop_index("ix_registry_entries_core_head", "registry_entries")
    op.drop_index("ix_registry_entries_normalized_name", "registry_entries")
    op.drop_table("registry_entries")
