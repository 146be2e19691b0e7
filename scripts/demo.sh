#!/usr/bin/env bash
# One command for a fresh Debian machine: set up, then run the demo (bot + platform simulator
# + web chat page on SQLite). Open the printed URL. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
exec fieldbot demo "$@"
