"""alerts: alert_state, customer_health, job_runs; partial indexes for the scans

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN_DEAL_SQL = "stage NOT IN ('won', 'lost')"
UNPAID_SQL = "paid_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "alert_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule", "entity_id"),
    )
    with op.batch_alter_table("alert_state", schema=None) as batch_op:
        batch_op.create_index("ix_alert_state_rule_active", ["rule", "active"], unique=False)

    op.create_table(
        "customer_health",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("grade", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("run_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("instance", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "run_key"),
    )
    op.create_index("ix_deals_open_activity", "deals", ["last_activity_at"], unique=False,
                    sqlite_where=sa.text(OPEN_DEAL_SQL), postgresql_where=sa.text(OPEN_DEAL_SQL))
    op.create_index("ix_invoices_unpaid_due", "invoices", ["due_date"], unique=False,
                    sqlite_where=sa.text(UNPAID_SQL), postgresql_where=sa.text(UNPAID_SQL))
    op.create_index("ix_customers_last_activity", "customers", ["last_activity_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_customers_last_activity", table_name="customers")
    op.drop_index("ix_invoices_unpaid_due", table_name="invoices")
    op.drop_index("ix_deals_open_activity", table_name="deals")
    op.drop_table("job_runs")
    op.drop_table("customer_health")
    with op.batch_alter_table("alert_state", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_state_rule_active")
    op.drop_table("alert_state")
