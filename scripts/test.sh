#!/usr/bin/env bash
# One command for a fresh Debian machine: set up (incl. PostgreSQL and wrk), lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
. .venv/bin/activate
echo ">> ruff"; ruff check .
echo ">> import contracts"; lint-imports
echo ">> pytest"; python -m pytest -q -p no:cacheprovider "$@"
