"""``fieldbot`` is the composition root's (``app/cli.py``): the product's commands plus
``demo``; the product's own CLI (``bot.cli``) knows no simulator (issue 15: the product never
imports its fake; an import-linter contract checks the imports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_fieldbot_has_demo_and_the_product_cli_does_not():
    out = run("app.cli", "demo", "--help")
    assert out.returncode == 0 and "--transport" in out.stdout, out.stderr
    out = run("app.cli", "--help")
    assert all(c in out.stdout for c in ("serve", "worker", "migrate", "demo"))
    out = run("bot.cli", "--help")
    assert out.returncode == 0 and "serve" in out.stdout and "demo" not in out.stdout
    out = run("bot.cli", "demo")
    assert out.returncode == 2 and "invalid choice" in out.stderr
    assert "app.cli:main" in (ROOT / "pyproject.toml").read_text()
