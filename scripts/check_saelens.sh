#!/usr/bin/env bash
# SAELens reads the SAE folders this package writes, and this package reads SAELens's, with identical encode and
# decode outputs (scripts/check_saelens.py). SAELens 6 needs transformer-lens < 4, so it gets its own environment,
# .venv-saelens, on the CPU build of torch; the package's side runs in .venv (bash scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
quiet() { "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
[ -x .venv/bin/python ] || bash scripts/setup.sh
[ -x .venv-saelens/bin/python ] || python3 -m venv .venv-saelens
quiet .venv-saelens/bin/python -m pip install -q "torch==2.13.0"
quiet .venv-saelens/bin/python -m pip install -q -c <(echo "torch==2.13.0") "sae-lens>=6,<7"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python scripts/check_saelens.py write --work "$work"
.venv-saelens/bin/python -W ignore scripts/check_saelens.py saelens --work "$work"
.venv/bin/python scripts/check_saelens.py read --work "$work"
