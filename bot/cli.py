"""``fieldbot`` command line: serve, worker, migrate, media tools (``demo`` is added by the
composition root, ``app/cli.py``)."""

from __future__ import annotations

import argparse
import os
import sys

from config import ConfigError, load_settings


def _serve(args) -> int:
    from aiohttp import web

    from bot.app import create_app
    from bot.procs import Supervisor, settle_heap, spawn_workers

    settings = load_settings(args.config)
    workers = settings.workers if args.workers is None else args.workers
    app = create_app(settings, role="web" if workers > 0 else "all")  # migrates first
    supervisor = Supervisor(spawn_workers(workers, args.config), args.config).start()
    settle_heap()
    print(f"FieldBot listening on http://{settings.host}:{settings.port}"
          f" ({workers} worker process{'es' if workers != 1 else ''})", flush=True)
    try:
        web.run_app(app, host=settings.host, port=settings.port, print=None)
    finally:
        supervisor.stop()
    return 0


def _worker(args) -> int:
    import asyncio

    from bot.procs import run_worker

    return asyncio.run(run_worker(load_settings(args.config)))


def _migrate(args) -> int:
    from storage.migrate import upgrade

    settings = load_settings(args.config)
    upgrade(settings.resolved_database_url())
    print("database is at the latest schema")
    return 0


# commands that create data files: they run with umask 077 (files 0600, directories 0700)
PRIVATE_FILES = ("serve", "worker", "migrate", "demo", "registry-import")


def main(argv: list[str] | None = None, extra: tuple = ()) -> int:
    parser = argparse.ArgumentParser(prog="fieldbot", description="FieldBot 拜访助手")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="run the bot (webhooks for the configured platforms)")
    p.add_argument("--config", help="TOML settings file (env vars FIELDBOT_* win)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes beside the web process (default FIELDBOT_WORKERS=1;"
                        " 0 = everything in one process)")
    p.set_defaults(fn=_serve)
    p = sub.add_parser("worker", help="a worker process (serve starts them itself)")
    p.add_argument("--config")
    p.set_defaults(fn=_worker)
    p = sub.add_parser("migrate", help="upgrade the database schema")
    p.add_argument("--config")
    p.set_defaults(fn=_migrate)
    for add in extra:  # commands the composition root adds (app/cli.py: demo)
        add(sub)
    from integrations.media.cli import add_subcommands  # ocr, transcribe, models (issue 3)
    add_subcommands(sub)
    from integrations.registry.cli import add_subcommands as add_registry  # issue 16 §4
    add_registry(sub)
    args = parser.parse_args(argv)
    if args.cmd in PRIVATE_FILES:
        # the database, its WAL, the inbox file, the media store, exports: the owner's only
        os.umask(0o077)
    from bot.logformat import configure

    configure(args.log_level, os.environ.get("FIELDBOT_LOG_FORMAT", "text").strip().lower())
    try:
        return args.fn(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
