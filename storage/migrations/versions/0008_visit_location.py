"""visit positions and customer coordinates, and the capture page's idempotency key (issue 16)

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STR = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("visits", schema=None) as b:
        # the capture page's client-generated key: each queued visit is filed exactly once
        b.add_column(sa.Column("client_key", STR(), nullable=True))
        b.add_column(sa.Column("lat", sa.Float(), nullable=True))
        b.add_column(sa.Column("lng", sa.Float(), nullable=True))
        b.add_column(sa.Column("accuracy_m", sa.Float(), nullable=True))
        b.add_column(sa.Column("coord_system", STR(), nullable=False, server_default=""))
        b.create_index(b.f("ix_visits_client_key"), ["client_key"], unique=True)
    with op.batch_alter_table("customers", schema=None) as b:
        b.add_column(sa.Column("lat", sa.Float(), nullable=True))
        b.add_column(sa.Column("lng", sa.Float(), nullable=True))
        b.add_column(sa.Column("coord_system", STR(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as b:
        b.drop_column("coord_system")
        b.drop_column("lng")
        b.drop_column("lat")
    with op.batch_alter_table("visits", schema=None) as b:
        b.drop_index(b.f("ix_visits_client_key"))
        b.drop_column("coord_system")
        b.drop_column("accuracy_m")
        b.drop_column("lng")
        b.drop_column("lat")
        b.drop_column("client_key")
