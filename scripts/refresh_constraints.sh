#!/usr/bin/env bash
# Refresh constraints.txt: install the newest releases pyproject.toml allows into a fresh .venv-latest, run the whole
# suite there, and only if it passes write their exact versions to constraints.txt (torch stays on the 2.13.0 CPU
# wheel). Review the diff, then commit it with the suite's result.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .venv-latest
bash scripts/setup.sh --latest
.venv-latest/bin/python -m pytest -q
{
  echo "# Exact versions the whole test suite passed on (scripts/refresh_constraints.sh, $(date -u +%Y-%m-%d))."
  echo "# scripts/setup.sh installs with these; pyproject.toml keeps the ranges."
  .venv-latest/bin/python -m pip freeze --exclude-editable | grep -v "^hooked-bilinear" | sed "s/^torch==2.13.0+cpu$/torch==2.13.0/" | sort -f
} > constraints.txt
echo "constraints.txt refreshed: review 'git diff constraints.txt' and commit it."
