"""``fieldbot registry-import file.csv``: load a business-registry CSV into the local table
(``integrations.registry.importer``); prints the counts and every rejected line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


def _import(args) -> int:
    from config import load_settings
    from integrations.registry.importer import RegistryImportError, import_csv
    from storage.db import async_engine
    from storage.migrate import upgrade

    settings = load_settings(args.config)
    url = settings.resolved_database_url()
    upgrade(url)
    path = Path(args.file)
    if not path.is_file():
        print(f"file not found: {path}", file=sys.stderr)
        return 2

    async def run():
        engine = async_engine(url)
        try:
            return await import_csv(engine, path.read_bytes())
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(run())
    except RegistryImportError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    return 1 if report.errors else 0


def add_subcommands(sub) -> None:
    p = sub.add_parser("registry-import",
                       help="load a business-registry CSV (工商信息) into the local table")
    p.add_argument("file")
    p.add_argument("--config")
    p.set_defaults(fn=_import)
