"""to_llama: current-format tdooms checkpoints become stock LlamaForCausalLMs with the same logits; formats without a
Llama form are refused with the reason."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

import hooked_bilinear as hb
from tests.llama import write_llama
from tests.reference import EMBEDDED, make_config, reference_logits, write_checkpoint


@pytest.mark.parametrize(
    "overrides",
    [{}, {"bias": True}, {"gate": "silu"}, {"gate": "gelu", "n_layer": 3}],
    ids=["bilinear", "bias", "glu-silu", "glu-gelu-3l"],
)
def test_to_llama_matches_independent_reference(tmp_path, overrides):
    config = make_config("current", **overrides)
    state = write_checkpoint(tmp_path, config, vocab=50)
    llama = hb.to_llama(tmp_path)
    assert type(llama).__name__ == "LlamaForCausalLM"
    assert llama.config.hidden_act == (overrides.get("gate") or "linear")
    tokens = torch.randint(0, 50, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = llama(tokens).logits.double()
    assert (logits - reference_logits(state, config, tokens)).abs().max().item() <= 1e-5
    provenance = hb.publishing.provenance.provenance_of(llama)
    assert provenance.max_abs_logit_diff <= 1e-5 and str(tmp_path) in provenance.source


def test_to_llama_of_embedded_checkpoint_loads_back_bilinear(tmp_path):
    llama = hb.to_llama(EMBEDDED)
    tokens = torch.randint(0, llama.config.vocab_size, (2, 30), generator=torch.Generator().manual_seed(2))
    source = hb.from_pretrained(EMBEDDED)
    expected = source(tokens)
    tolerance = 1e-6 * expected.abs().max().item()  # float32 rounding, relative to logits of size ~20
    with torch.no_grad():
        assert (llama(tokens).logits - expected).abs().max().item() <= tolerance
    llama.save_pretrained(tmp_path)
    bridge = hb.from_pretrained(tmp_path, tokenizer=source.tokenizer)
    assert all(isinstance(block.mlp, hb.HookedBilinearMLP) for block in bridge.blocks)
    assert (bridge(tokens) - expected).abs().max().item() <= tolerance


@pytest.mark.parametrize(
    "fmt,overrides,reason",
    [
        ("legacy", {}, "legacy format"),
        ("current", {"normalization": False}, "normalization is false"),
        ("current", {"bilinear": False}, "plain"),
    ],
    ids=["legacy", "no-norm", "plain-mlp"],
)
def test_unrepresentable_formats_are_refused_with_reason(tmp_path, fmt, overrides, reason):
    write_checkpoint(tmp_path, make_config(fmt, **overrides), vocab=50)
    with pytest.raises(hb.ConversionError, match=reason):
        hb.to_llama(tmp_path)


def test_authors_bias_format_round_trips_as_llama_mlp_bias(tmp_path, tokens):
    config = make_config("current", bias=True)
    state = write_checkpoint(tmp_path / "authors", config, vocab=50)
    llama = hb.to_llama(tmp_path / "authors")
    assert llama.config.mlp_bias and not llama.config.attention_bias
    llama.save_pretrained(tmp_path / "llama")
    expected = reference_logits(state, config, tokens)
    with torch.no_grad():
        reloaded = LlamaForCausalLM.from_pretrained(str(tmp_path / "llama")).eval()
        assert (reloaded(tokens).logits - expected).abs().max().item() <= 1e-5
    bridge = hb.from_pretrained(tmp_path / "llama")
    assert (bridge(tokens) - expected).abs().max().item() <= 1e-5


def test_to_llama_of_a_bridge(tmp_path):
    bridge = hb.from_pretrained(EMBEDDED)
    llama = hb.to_llama(bridge)
    tokens = torch.randint(0, 330, (2, 30), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = bridge(tokens)
        assert (llama(tokens).logits - expected).abs().max().item() <= 1e-6 * expected.abs().max().item()
    assert hb.publishing.source.tokenizer_of(llama) is bridge.tokenizer
    write_llama(tmp_path / "llama")
    with pytest.raises(hb.ConversionError, match="already a LlamaForCausalLM.*save_pretrained"):
        hb.to_llama(hb.from_pretrained(tmp_path / "llama", tokenizer=bridge.tokenizer))
    bridge.enable_compatibility_mode()
    with pytest.raises(hb.ConversionError, match="weight processing.*hooked_bilinear.from_pretrained without"):
        hb.to_llama(bridge)
    with pytest.raises(hb.ConversionError, match="takes a TransformerBridge.*not int"):
        hb.to_llama(3)
