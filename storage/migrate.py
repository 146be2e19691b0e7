"""Bring a database to the current schema with Alembic (``alembic upgrade head``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def load_all_models() -> None:
    """Register every table module (``storage/models.py``, ``storage/*_models.py``) so the
    metadata Alembic compares against is complete."""
    import importlib
    import pkgutil

    import storage

    for mod in pkgutil.iter_modules(storage.__path__):
        if mod.name.endswith("models"):
            importlib.import_module(f"storage.{mod.name}")


def render_item(type_, obj, autogen_context):
    """Autogenerate hook: write ``storage.models.UTCDateTime`` as the plain column type it
    stores, so a generated migration never imports the (changing) models."""
    from storage.models import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def include_object(connection):
    """Autogenerate filter: on file-backed SQLite ``inbox_events`` lives in the attached inbox
    file (storage.db), not in the main schema Alembic compares."""
    from storage.db import inbox_attached

    split = inbox_attached(connection)

    def include(obj, name, type_, _reflected, _compare_to):
        if not split:
            return True
        table = obj.table.name if type_ == "index" else name
        return not (type_ in ("table", "index") and table == "inbox_events")

    return include


def upgrade(url: str) -> None:
    from storage.db import normalize

    sync, _ = normalize(url)
    command.upgrade(alembic_config(sync.render_as_string(hide_password=False)), "head")
