#!/usr/bin/env bash
# One command for a fresh Debian machine: set up (incl. PostgreSQL and wrk), lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
. .venv/bin/activate
echo ">> ruff"; ruff check .
echo ">> import contracts"; lint-imports
echo ">> pytest"; python -m pytest -q -p no:cacheprovider "$@"
# the date-dependent tests again at awkward dates (month ends, 29 Feb, 31 Dec, a Monday,
# 23:59:30 Shanghai); FIELDBOT_TEST_DATES=0 skips this step (a quick local run)
if [[ $# -eq 0 && "${FIELDBOT_TEST_DATES:-1}" != 0 ]]; then
  grep -v '^#' tests/dates.txt | while read -r at why; do
    [[ -z $at ]] && continue
    echo ">> pytest -m dates at $at ($why)"
    FIELDBOT_TEST_NOW=$at python -m pytest -q -p no:cacheprovider -m dates
  done
fi
