#!/usr/bin/env bash
# Create a virtual environment with the package, its test and docs dependencies, on the CPU build of torch.
#
#   bash scripts/setup.sh            .venv, every package at the exact version in constraints.txt (what the suite
#                                    passed on; what CI tests)
#   bash scripts/setup.sh --latest   .venv-latest, the newest releases pyproject.toml allows (CI's smoke job)
#
# torch==2.13.0 is installed first: a bare `torch` requirement in a fresh venv would pull the newest CUDA build
# (several GB). Refresh the constraints with scripts/refresh_constraints.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv
CONSTRAINTS=(-c constraints.txt)
if [ "${1:-}" = "--latest" ]; then
  VENV=.venv-latest
  CONSTRAINTS=()
fi
# The page tests drive Debian's Chromium (Playwright's own browser downloads are blocked on these machines).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null
fi
quiet() { "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
quiet "$VENV/bin/python" -m pip install -q --upgrade pip
quiet "$VENV/bin/python" -m pip install -q "torch==2.13.0"
if [ "$VENV" = .venv-latest ]; then
  quiet "$VENV/bin/python" -m pip install -q --upgrade --upgrade-strategy eager -e ".[test,docs]" "torch==2.13.0"
else
  quiet "$VENV/bin/python" -m pip install -q "${CONSTRAINTS[@]}" -e ".[test,docs]"
fi
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -c "import hooked_bilinear; from importlib.metadata import version as v; print('hooked_bilinear ready in $VENV:', ', '.join(f'{p} {v(p)}' for p in ('torch', 'transformers', 'transformer-lens')))"
