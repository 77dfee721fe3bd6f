#!/usr/bin/env bash
# Create .venv with the package and its test dependencies, on the CPU build of torch.
# torch==2.13.0 is installed first and pinned: a bare `torch` requirement in a fresh venv would pull the newest
# CUDA build (several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, hooked_bilinear; print('hooked_bilinear ready; torch', torch.__version__)"
