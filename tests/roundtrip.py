"""Round-trip checks of a saved folder: stock transformers in a fresh process (hooked_bilinear never imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

STOCK = """
import json, sys, torch
from transformers import AutoModelForCausalLM
folder, tokens_json, out = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(folder).eval()
assert "hooked_bilinear" not in sys.modules, "hooked_bilinear was imported"
with torch.no_grad():
    logits = model(torch.tensor(json.loads(tokens_json))).logits
torch.save({"logits": logits, "class": type(model).__name__, "act": model.config.hidden_act}, out)
"""


def stock_logits_in_fresh_process(folder: Path, tokens: torch.Tensor, tmp: Path) -> dict:
    """Logits of AutoModelForCausalLM.from_pretrained(folder) computed in a new Python without hooked_bilinear."""
    out = tmp / "stock.pt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", STOCK, str(folder), json.dumps(tokens.tolist()), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out, weights_only=True)
