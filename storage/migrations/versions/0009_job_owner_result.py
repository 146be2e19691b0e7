"""jobs: the owner each job runs for (per-user caps) and a result the page reads, how long
its run took (issue 18)

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                               server_default=""))
        b.add_column(sa.Column("result", sa.JSON(), nullable=True))
        b.add_column(sa.Column("run_ms", sa.Integer(), nullable=True))
        b.create_index("ix_jobs_status_owner", ["status", "owner"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.drop_index("ix_jobs_status_owner")
        b.drop_column("run_ms")
        b.drop_column("result")
        b.drop_column("owner")
