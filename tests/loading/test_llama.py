"""Llama checkpoints (docs/formats.md section 4): bilinear ones load with HookedBilinearMLPs, exact against stock
transformers in raw and compatibility mode; SwiGLU ones keep gated MLPs; bad folders are refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

import hooked_bilinear as hb
from tests.llama import write_llama
from tests.reference import EMBEDDED
from tests.transformer_lens_checks import assert_transformer_lens_benchmarks_pass

TEXT = "once upon a time , there was a red cat named lily ."


@pytest.fixture(scope="module")
def tokenizer():
    return hb.from_pretrained(EMBEDDED).tokenizer


def stock_logits(folder, tokens: torch.Tensor) -> torch.Tensor:
    """Logits of a fresh stock transformers model read from the folder (the independent implementation)."""
    with torch.no_grad():
        return LlamaForCausalLM.from_pretrained(str(folder)).eval()(tokens).logits


@pytest.mark.smoke
@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
@pytest.mark.parametrize("overrides", [{}, {"mlp_bias": True, "attention_bias": True}], ids=["no-bias", "bias"])
def test_bilinear_llama_is_exact(tmp_path, tokenizer, compatibility_mode, overrides):
    folder, _ = write_llama(tmp_path, **overrides)
    bridge = hb.from_pretrained(folder, tokenizer=tokenizer, compatibility_mode=compatibility_mode)
    assert all(isinstance(block.mlp, hb.HookedBilinearMLP) for block in bridge.blocks)
    tokens = bridge.to_tokens(TEXT)
    logits, cache = bridge.run_with_cache(tokens)
    assert (logits - stock_logits(folder, tokens)).abs().max().item() <= 1e-5
    # The MLP is the bilinear form, from the saved tensors: down((gate x) * (up x)), after the layer's norm.
    state = load_file(str(folder / "model.safetensors"))
    for layer in range(2):
        p = f"model.layers.{layer}.mlp."
        resid = cache[f"blocks.{layer}.hook_resid_mid"].double()
        w = state[f"model.layers.{layer}.post_attention_layernorm.weight"].double()
        x = resid * torch.rsqrt(resid.pow(2).mean(-1, keepdim=True) + 1e-5) * w

        def linear(name: str, x: torch.Tensor, p: str = p) -> torch.Tensor:
            bias = state.get(p + name + ".bias")
            return x @ state[p + name + ".weight"].double().T + (0 if bias is None else bias.double())

        expected = linear("down_proj", linear("gate_proj", x) * linear("up_proj", x))
        assert (cache[f"blocks.{layer}.hook_mlp_out"].double() - expected).abs().max().item() <= 1e-5
        # the gate is gate_proj and the linear side up_proj (their product commutes; the hooks do not)
        assert (cache[f"blocks.{layer}.mlp.hook_pre"].double() - linear("gate_proj", x)).abs().max().item() <= 1e-5
        assert (cache[f"blocks.{layer}.mlp.hook_pre_linear"].double() - linear("up_proj", x)).abs().max() <= 1e-5
        torch.testing.assert_close(
            cache[f"blocks.{layer}.mlp.hook_post"],
            cache[f"blocks.{layer}.mlp.hook_pre"] * cache[f"blocks.{layer}.mlp.hook_pre_linear"],
        )


@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
def test_transformer_lens_benchmarks_pass_on_bilinear_llama(tmp_path, tokenizer, compatibility_mode):
    folder, _ = write_llama(tmp_path)
    bridge = hb.from_pretrained(folder, tokenizer=tokenizer, compatibility_mode=compatibility_mode)
    reference = stock_logits(folder, bridge.to_tokens(TEXT))
    assert_transformer_lens_benchmarks_pass(bridge, TEXT, reference)


def test_weight_analyses_hold_on_llama_mlp(tmp_path, tokenizer):
    folder, _ = write_llama(tmp_path)
    bridge = hb.from_pretrained(folder, tokenizer=tokenizer)
    _, cache = bridge.run_with_cache(TEXT)
    mlp = bridge.blocks[1].mlp
    u = torch.randn(64, dtype=torch.float64)
    q = mlp.interaction_matrix(u, dtype=torch.float64)
    x = cache["blocks.1.mlp.hook_in"][0].double()
    torch.testing.assert_close(
        torch.einsum("pi,ij,pj->p", x, q, x), cache["blocks.1.hook_mlp_out"][0].double() @ u, atol=1e-5, rtol=1e-5
    )


def test_swiglu_llama_keeps_gated_mlps(tmp_path, tokenizer):
    folder, _ = write_llama(tmp_path, hidden_act="silu")
    for compatibility_mode in (False, True):
        bridge = hb.from_pretrained(folder, tokenizer=tokenizer, compatibility_mode=compatibility_mode)
        assert not any(isinstance(block.mlp, hb.HookedBilinearMLP) for block in bridge.blocks)
        tokens = bridge.to_tokens(TEXT)
        assert (bridge(tokens) - stock_logits(folder, tokens)).abs().max().item() <= 1e-5
    with pytest.raises(hb.NotBilinearError, match="blocks.0.mlp is a gated MLP with activation 'silu'"):
        hb.analysis.mlp_factors(bridge, 0)
    with pytest.raises(hb.NotBilinearError, match="blocks.1.mlp is a gated MLP.*bilinearize"):
        bridge.blocks[1].mlp.eigendecompose(torch.randn(bridge.cfg.d_model), 2)  # was an AttributeError


def test_llama_with_missing_weight_is_refused(tmp_path):
    folder, _ = write_llama(tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(hb.CheckpointWeightsError, match="up_proj"):
        hb.from_pretrained(folder)


def test_checkpoint_format_is_refused_for_llama(tmp_path):
    folder, _ = write_llama(tmp_path)
    assert json.loads((folder / "config.json").read_text())["hidden_act"] == "linear"
    with pytest.raises(hb.CheckpointFormatError, match="Llama"):
        hb.from_pretrained(folder, checkpoint_format="current")
