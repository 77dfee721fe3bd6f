"""KV-cached generation equals greedy decoding by repeated full forward passes, token for token, on every path:
transformers' `generate` on the model class, TransformerLens's `bridge.generate` on tdooms and bilinear-Llama bridges,
and stock transformers on a converted Llama folder in a fresh process. A dropped cache changes the tokens."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import hooked_bilinear as hb
from tests.llama import write_llama
from tests.reference import EMBEDDED

SHIPPED = Path(hb.__file__).parent / "checkpoints" / EMBEDDED
PROMPT = "once upon a time , there was a"
NEW_TOKENS = 12
pytestmark = pytest.mark.smoke


def greedy(forward, tokens: torch.Tensor, n: int = NEW_TOKENS) -> torch.Tensor:
    """Greedy decoding by full forward passes over the whole sequence (no cache anywhere)."""
    with torch.no_grad():
        for _ in range(n):
            tokens = torch.cat([tokens, forward(tokens)[:, -1].argmax(-1, keepdim=True)], 1)
    return tokens


def test_transformers_generate_on_the_shipped_checkpoint_uses_its_cache():
    model = AutoModelForCausalLM.from_pretrained(str(SHIPPED)).eval()
    tokens = hb.from_pretrained(EMBEDDED).to_tokens(PROMPT)
    out = model.generate(tokens, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=2)
    assert torch.equal(out, greedy(lambda t: model(t).logits, tokens))


def test_tdooms_bridge_generate_equals_greedy_decoding():
    bridge = hb.from_pretrained(EMBEDDED)
    tokens = bridge.to_tokens(PROMPT)
    out = bridge.generate(tokens, max_new_tokens=NEW_TOKENS, do_sample=False, use_past_kv_cache=True, verbose=False)
    assert torch.equal(out, greedy(bridge, tokens))


@pytest.mark.parametrize("hidden_act", ["linear", "silu"])
@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
def test_llama_bridge_generate_equals_greedy_decoding(tmp_path, hidden_act, compatibility_mode):
    folder, _ = write_llama(tmp_path, hidden_act=hidden_act, std=0.3)
    bridge = hb.from_pretrained(
        folder, tokenizer=hb.from_pretrained(EMBEDDED).tokenizer, compatibility_mode=compatibility_mode
    )
    tokens = bridge.to_tokens(PROMPT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no past_key_values deprecation at each decoding step
        out = bridge.generate(tokens, max_new_tokens=NEW_TOKENS, do_sample=False, use_past_kv_cache=True, verbose=False)
    expected = greedy(bridge, tokens)
    assert torch.equal(out, expected)
    assert len(set(expected[0, tokens.shape[1] :].tolist())) > 1, "a constant continuation would not test the cache"


FRESH = """
import json, sys, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
tokens = torch.tensor(json.loads(sys.argv[2]))
out = model.generate(tokens, max_new_tokens=int(sys.argv[3]), do_sample=False, pad_token_id=2)
with torch.no_grad():
    manual = tokens
    for _ in range(int(sys.argv[3])):
        manual = torch.cat([manual, model(manual).logits[:, -1].argmax(-1, keepdim=True)], 1)
assert "hooked_bilinear" not in sys.modules
print(json.dumps({"generate": out.tolist(), "greedy": manual.tolist()}))
"""


def test_converted_llama_folder_generates_greedily_in_stock_transformers(tmp_path):
    hb.to_llama(EMBEDDED).save_pretrained(tmp_path / "llama")
    tokens = hb.from_pretrained(EMBEDDED).to_tokens(PROMPT)
    result = subprocess.run(
        [sys.executable, "-c", FRESH, str(tmp_path / "llama"), json.dumps(tokens.tolist()), str(NEW_TOKENS)],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["generate"] == out["greedy"]
    assert out["greedy"] == greedy(lambda t: hb.from_pretrained(EMBEDDED)(t), tokens).tolist()
