"""Data files are the owner's only: ``fieldbot migrate`` (like serve, worker and demo) runs with
umask 077, so the SQLite database, its WAL and the directories it makes are 0600 / 0700."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_migrate_creates_private_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    db = data / "fieldbot.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDBOT_")}
    env["FIELDBOT_DATABASE_URL"] = f"sqlite:///{db}"
    out = subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    made = list(data.rglob("*"))
    assert db in made
    for p in made:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, (p, oct(mode))
