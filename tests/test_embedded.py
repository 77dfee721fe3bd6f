"""The shipped checkpoint: tdooms current format on disk, docs/formats.md tokenizer, trained (not random)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

import hooked_bilinear as hb
from tests.reference import EMBEDDED, reference_logits

FOLDER = Path(hb.__file__).parent / "checkpoints" / EMBEDDED


def test_listed_and_in_current_tdooms_format():
    assert EMBEDDED in hb.shipped_checkpoints()
    config = json.loads((FOLDER / "config.json").read_text())
    assert (
        hb.detect_format(config) == "current" and config["model_type"] == "tdooms_bilinear" and config["gate"] is None
    )
    assert config["vocab_size"] == 330 and config["architectures"] == ["BilinearForCausalLM"]
    assert (config["n_layer"], config["d_model"]) == (2, 128)


def test_logits_match_reference_on_shipped_weights():
    config = json.loads((FOLDER / "config.json").read_text())
    state = load_file(str(FOLDER / "model.safetensors"))
    bridge = hb.from_pretrained(EMBEDDED)
    tokens = bridge.to_tokens("lily and tom looked for the kite in the forest .")
    assert (bridge(tokens, return_type="logits") - reference_logits(state, config, tokens)).abs().max() <= 1e-5


def test_tokenizer_is_the_tinystories_wordpiece_layout():
    spec = json.loads((FOLDER / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "WordPiece" and spec["model"]["continuing_subword_prefix"] == "##"
    assert [n["type"] for n in spec["normalizer"]["normalizers"]] == ["NFD", "StripAccents", "Lowercase"]
    pre = spec["pre_tokenizer"]["pretokenizers"]
    assert [p["type"] for p in pre] == ["Punctuation", "Whitespace", "Digits"] and pre[2]["individual_digits"]
    assert spec["decoder"] is None
    vocab = spec["model"]["vocab"]
    assert (vocab["[UNK]"], vocab["[BOS]"], vocab["[EOS]"]) == (0, 1, 2)
    tokenizer = hb.from_pretrained(EMBEDDED).tokenizer
    assert tokenizer("Lily Ate 42 Cakes!")["input_ids"][0] == 1
    assert tokenizer.convert_ids_to_tokens(tokenizer("Lily 42!")["input_ids"]) == ["[BOS]", "lily", "4", "2", "!"]
    assert tokenizer.pad_token == "[EOS]"


def test_trained_well_below_uniform_loss():
    bridge = hb.from_pretrained(EMBEDDED)
    tokens = bridge.to_tokens(
        "once upon a time , there was a happy dog named tom . tom went to the park with his dog ."
    )
    loss = bridge(tokens, return_type="loss").item()
    assert loss < 0.5 * math.log(bridge.cfg.d_vocab)
    with torch.no_grad():
        random_loss = torch.nn.functional.cross_entropy(torch.zeros(1, bridge.cfg.d_vocab), tokens[0, :1]).item()
    assert loss < random_loss / 3
