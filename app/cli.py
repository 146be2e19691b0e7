"""``fieldbot``: the product's commands (``bot.cli``) and ``demo`` (bot + platform simulator +
web chat, on SQLite)."""

from __future__ import annotations

import sys

from bot import cli


def _demo(args) -> int:
    from simulator.demo import run_demo

    return run_demo(host=args.host, port=args.port, data_dir=args.data_dir,
                    transport=args.transport)


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="bot + platform simulator + web chat, on SQLite")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--data-dir", default="data/demo")
    p.add_argument("--transport", choices=("webhook", "stream"), default="webhook",
                   help="stream: DingTalk Stream and Feishu 长连接, no inbound HTTP callback")
    p.set_defaults(fn=_demo)


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, extra=(add_demo,))


if __name__ == "__main__":
    sys.exit(main())
