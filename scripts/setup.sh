#!/usr/bin/env bash
# Set up a fresh Debian machine for FieldBot: apt packages, a venv in .venv, the project.
# Idempotent: a second run only checks. Usage: scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_pkgs=()
command -v python3 >/dev/null || apt_pkgs+=(python3)
python3 -c "import venv, ensurepip" 2>/dev/null || apt_pkgs+=(python3-venv)
if [[ $want_test -eq 1 ]]; then
  command -v wrk >/dev/null || apt_pkgs+=(wrk)
  if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    command -v pg_ctlcluster >/dev/null || apt_pkgs+=(postgresql)
  fi
fi
# -- media (issue 3): ffmpeg decodes voice notes (AMR/Opus), tesseract is the OCR fallback;
# CJK fonts only render the benchmark's sign photos (tests use committed fixtures)
command -v ffmpeg >/dev/null || apt_pkgs+=(ffmpeg)
command -v tesseract >/dev/null || apt_pkgs+=(tesseract-ocr)
[[ -f /usr/share/tesseract-ocr/5/tessdata/chi_sim.traineddata ]] \
  || ls /usr/share/tesseract-ocr/*/tessdata/chi_sim.traineddata >/dev/null 2>&1 \
  || apt_pkgs+=(tesseract-ocr-chi-sim)
if [[ $want_test -eq 1 ]]; then
  [[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc ]] || apt_pkgs+=(fonts-noto-cjk)
  # the mini-app's browser tests (issue 6): Playwright drives Debian's Chromium headless
  command -v chromium >/dev/null || apt_pkgs+=(chromium)
fi
if [[ ${#apt_pkgs[@]} -gt 0 ]]; then
  echo ">> installing apt packages: ${apt_pkgs[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

if [[ $want_test -eq 1 ]] && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo ">> starting PostgreSQL on 127.0.0.1:5432 (trust auth for local tests)"
  ver=$(ls /etc/postgresql | sort -n | tail -1)
  conf=/etc/postgresql/$ver/main
  grep -q "fieldbot-tests" "$conf/pg_hba.conf" || as_root sed -i \
    '1i host all all 127.0.0.1/32 trust # fieldbot-tests' "$conf/pg_hba.conf"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 30); do (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && break; sleep 1; done
  as_root su postgres -c "psql -tc \"SELECT 1 FROM pg_database WHERE datname='test'\" | grep -q 1 \
    || createdb test" || true
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo ">> creating .venv"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.fieldbot-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp || constraints.txt -nt $stamp ]]; then
  echo ">> installing FieldBot and its dependencies into .venv"
  python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  python -m pip install -q -c constraints.txt -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
  if [[ $want_test -eq 1 ]]; then  # media (issue 3): the optional openai-whisper backend
    python -m pip install -q -c constraints.txt -e ".[test,whisper]" 2>&1 | grep -v "^WARNING: Location" || true
    python -m pip install -q -c constraints.txt --no-deps openai-whisper==20250625 2>&1 \
      | grep -v "^WARNING: Location" || true
  fi
  python -c "import bot.app, integrations, aiohttp, wechatpy, dingtalk, lark_oapi" \
    || { echo "installation failed" >&2; exit 1; }
  touch "$stamp"
fi
echo ">> setup done"
