"""inbox_done guard table; on file-backed SQLite the inbox moves to its own attached file

Revision ID: 0005
Revises: 0004

SQLite has one write lock per file: with ``inbox_events`` in ``<name>.inbox.db`` (attached as
schema ``inbox`` by storage.db), acknowledging a callback never waits for a handler's or an
import's transaction. Pending rows are copied across before the main file's table is dropped.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLS = ("id, dedupe_key, platform, payload, status, attempts, error, received_at,"
        " claimed_until, done_at")


def _split_sqlite(bind) -> bool:
    if bind.dialect.name != "sqlite":
        return False
    return any(r[1] == "inbox" for r in bind.exec_driver_sql("PRAGMA database_list"))


def upgrade() -> None:
    op.create_table(
        "inbox_done",
        sa.Column("dedupe_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dedupe_key"),
    )
    bind = op.get_bind()
    if _split_sqlite(bind):
        bind.exec_driver_sql(f"INSERT OR IGNORE INTO inbox.inbox_events ({COLS})"
                             f" SELECT {COLS} FROM main.inbox_events")
        bind.exec_driver_sql("INSERT OR IGNORE INTO inbox_done (dedupe_key, done_at)"
                             " SELECT dedupe_key, coalesce(done_at, received_at)"
                             " FROM main.inbox_events WHERE status='done'")
        bind.exec_driver_sql("DROP TABLE main.inbox_events")
    else:
        bind.exec_driver_sql("INSERT INTO inbox_done (dedupe_key, done_at)"
                             " SELECT dedupe_key, coalesce(done_at, received_at)"
                             " FROM inbox_events WHERE status='done'")


def downgrade() -> None:
    bind = op.get_bind()
    if _split_sqlite(bind):
        bind.exec_driver_sql(
            "CREATE TABLE main.inbox_events (id INTEGER NOT NULL, dedupe_key VARCHAR NOT NULL,"
            " platform VARCHAR NOT NULL, payload TEXT NOT NULL, status VARCHAR NOT NULL,"
            " attempts INTEGER NOT NULL, error VARCHAR NOT NULL, received_at DATETIME NOT NULL,"
            " claimed_until DATETIME, done_at DATETIME, PRIMARY KEY (id), UNIQUE (dedupe_key))")
        bind.exec_driver_sql("CREATE INDEX main.ix_inbox_status_id ON inbox_events (status, id)")
        bind.exec_driver_sql(f"INSERT INTO main.inbox_events ({COLS})"
                             f" SELECT {COLS} FROM inbox.inbox_events")
        bind.exec_driver_sql("DELETE FROM inbox.inbox_events")
    op.drop_table("inbox_done")
