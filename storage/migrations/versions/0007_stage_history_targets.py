"""deal stage history and sales targets (issue 17)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STR = sqlmodel.sql.sqltypes.AutoString

# One "stage" row per deal that has none yet: running it twice adds nothing.
BACKFILL = """
INSERT INTO deal_history (deal_id, field, old, new, who, source, at)
SELECT d.id, 'stage', NULL, d.stage, 'migration', 'migration', d.created_at
FROM deals d
WHERE NOT EXISTS (SELECT 1 FROM deal_history h WHERE h.deal_id = d.id AND h.field = 'stage')
"""


def backfill() -> None:
    op.execute(BACKFILL)


def upgrade() -> None:
    op.create_table(
        "deal_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deal_id", sa.Integer(), nullable=False),
        sa.Column("field", STR(), nullable=False),
        sa.Column("old", STR(), nullable=True),
        sa.Column("new", STR(), nullable=True),
        sa.Column("who", STR(), nullable=False),
        sa.Column("source", STR(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["deal_id"], ["deals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deal_history", schema=None) as b:
        b.create_index("ix_deal_history_deal_field_at", ["deal_id", "field", "at"], unique=False)
        b.create_index("ix_deal_history_field_new_at", ["field", "new", "at"], unique=False)
    op.create_table(
        "sales_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", STR(), nullable=False),
        sa.Column("scope_id", sa.Integer(), nullable=False),
        sa.Column("period_kind", STR(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("metric", STR(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scope", "scope_id", "period_kind", "period_start", "metric",
                            "version"),
    )
    backfill()


def downgrade() -> None:
    op.drop_table("sales_targets")
    with op.batch_alter_table("deal_history", schema=None) as b:
        b.drop_index("ix_deal_history_field_new_at")
        b.drop_index("ix_deal_history_deal_field_at")
    op.drop_table("deal_history")
