"""The forecast (issue 17 §4): deals get an expected close date and the rep's forecast
category; Monday snapshots of every forecast.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deals") as b:
        b.add_column(sa.Column("expected_close", sa.Date(), nullable=True))
        b.add_column(sa.Column("forecast_category", sqlmodel.sql.sqltypes.AutoString(),
                               nullable=False, server_default="pipeline"))
        b.create_index("ix_deals_expected_close", ["expected_close"])
    op.create_table(
        "forecast_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("taken_on", sa.Date(), nullable=False),
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("scope_id", sa.Integer(), nullable=False),
        sa.Column("period_kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("won", sa.Float(), nullable=False, server_default="0"),
        sa.Column("basis", sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                  server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("taken_on", "scope", "scope_id", "period_kind", "period_start",
                            "method"),
    )
    op.create_index("ix_forecast_snapshots_period", "forecast_snapshots",
                    ["period_kind", "period_start", "scope", "scope_id"])


def downgrade() -> None:
    op.drop_index("ix_forecast_snapshots_period", "forecast_snapshots")
    op.drop_table("forecast_snapshots")
    with op.batch_alter_table("deals") as b:
        b.drop_index("ix_deals_expected_close")
        b.drop_column("forecast_category")
        b.drop_column("expected_close")
