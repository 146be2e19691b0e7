"""Alembic environment: the target metadata is every SQLModel table in storage.models."""

from alembic import context
from sqlalchemy import create_engine, event, pool
from sqlmodel import SQLModel

from storage.db import sqlite_on_connect
from storage.migrate import include_object, load_all_models, render_item

load_all_models()  # every storage/*models.py: autogenerate must see all tables

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, render_item=render_item)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":  # the inbox file attached, as on every connection
        event.listen(engine, "connect", sqlite_on_connect(url))
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # several instances may start at once: one migrates, the others wait
            connection.exec_driver_sql("SELECT pg_advisory_lock(715517)")
        include = include_object(connection)
        connection.commit()  # that query began a transaction: the migrations' must be fresh
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, render_item=render_item,
                          include_object=include)
        with context.begin_transaction():
            context.run_migrations()
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_unlock(715517)")
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
