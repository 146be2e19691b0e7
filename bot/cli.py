"""``fieldbot`` command line: serve, demo, migrate."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from config import ConfigError, load_settings


def _serve(args) -> int:
    from aiohttp import web

    from bot.app import create_app
    from bot.procs import settle_heap, spawn_workers, stop_workers

    settings = load_settings(args.config)
    workers = settings.workers if args.workers is None else args.workers
    app = create_app(settings, role="web" if workers > 0 else "all")  # migrates first
    procs = spawn_workers(workers, args.config)
    settle_heap()
    print(f"FieldBot listening on http://{settings.host}:{settings.port}"
          f" ({workers} worker process{'es' if workers != 1 else ''})", flush=True)
    try:
        web.run_app(app, host=settings.host, port=settings.port, print=None)
    finally:
        stop_workers(procs)
    return 0


def _worker(args) -> int:
    import asyncio

    from bot.procs import run_worker

    asyncio.run(run_worker(load_settings(args.config)))
    return 0


def _migrate(args) -> int:
    from storage.migrate import upgrade

    settings = load_settings(args.config)
    upgrade(settings.resolved_database_url())
    print("database is at the latest schema")
    return 0


def _demo(args) -> int:
    from simulator.demo import run_demo

    return run_demo(host=args.host, port=args.port, data_dir=args.data_dir)


# commands that create data files: they run with umask 077 (files 0600, directories 0700)
PRIVATE_FILES = ("serve", "worker", "migrate", "demo")


def main(argv: list[str] | None = None) -> int:
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
    p = sub.add_parser("demo", help="bot + platform simulator + web chat, on SQLite")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--data-dir", default="data/demo")
    p.set_defaults(fn=_demo)
    from integrations.media.cli import add_subcommands  # ocr, transcribe, models (issue 3)
    add_subcommands(sub)
    args = parser.parse_args(argv)
    if args.cmd in PRIVATE_FILES:
        # the database, its WAL, the inbox file, the media store, exports: the owner's only
        os.umask(0o077)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.fn(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
