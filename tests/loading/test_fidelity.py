"""Logits of every format variant equal the independent docs/formats.md forward pass (tests/reference.py)."""

from __future__ import annotations

import warnings

import pytest
import torch

import hooked_bilinear as hb
from tests.reference import reference_logits, variants, write_checkpoint

VARIANTS = variants()


def load(folder, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no tokenizer: expected for random checkpoints
        return hb.from_pretrained(folder, **kwargs)


@pytest.mark.smoke
@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
@pytest.mark.parametrize("name,config", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_logits_match_reference(tmp_path, tokens, name, config, compatibility_mode):
    state = write_checkpoint(tmp_path / name, config)
    bridge = load(tmp_path / name, compatibility_mode=compatibility_mode)
    expected = reference_logits(state, config, tokens)
    got = bridge(tokens, return_type="logits")
    assert (got - expected).abs().max().item() <= 1e-5
    assert expected.abs().max().item() > 0.3  # the check is not vacuous


@pytest.mark.parametrize(
    "name,config",
    [v for v in VARIANTS if v[0] in ("current-bilinear-bias", "legacy-bilinear")],
    ids=["current", "legacy"],
)
def test_full_hookedtransformer_processing_keeps_log_probs(tmp_path, tokens, name, config):
    """enable_compatibility_mode() with TL's defaults centres the unembedding: log-probs stay equal."""
    state = write_checkpoint(tmp_path / name, config)
    bridge = load(tmp_path / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge.enable_compatibility_mode()
    expected = reference_logits(state, config, tokens).log_softmax(-1)
    got = bridge(tokens, return_type="logits").log_softmax(-1)
    assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.smoke
@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
def test_bilinear_hooks(checkpoint, tokens, compatibility_mode):
    folder, config, state = checkpoint(bias=True)
    bridge = load(folder, compatibility_mode=compatibility_mode)
    _, cache = bridge.run_with_cache(tokens)
    d_hidden = config["d_hidden"]
    for layer in range(config["n_layer"]):
        mlp = f"blocks.{layer}.mlp"
        pre, pre_linear, post = (cache[f"{mlp}.{h}"] for h in ("hook_pre", "hook_pre_linear", "hook_post"))
        assert pre.shape == (2, tokens.shape[1], d_hidden)
        assert torch.equal(post, pre * pre_linear)
        # hook_pre is the LEFT half of the fused projection applied to hook_in: checks the split and orientation.
        w = state[f"transformer.h.{layer}.mlp.w.weight"]
        b = state[f"transformer.h.{layer}.mlp.w.bias"]
        x = cache[f"{mlp}.hook_in"]
        torch.testing.assert_close(pre, x @ w[:d_hidden].T + b[:d_hidden], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pre_linear, x @ w[d_hidden:].T + b[d_hidden:], atol=1e-5, rtol=1e-5)
        assert torch.equal(cache[f"{mlp}.hook_out"], cache[f"blocks.{layer}.hook_mlp_out"])
        resid = cache[f"blocks.{layer}.hook_resid_post"] - cache[f"blocks.{layer}.hook_resid_mid"]
        torch.testing.assert_close(resid, cache[f"blocks.{layer}.hook_mlp_out"], atol=1e-5, rtol=0)
        # hook_attn_out is the scaled contribution s * attn(n1(x)) actually added to the residual stream
        resid = cache[f"blocks.{layer}.hook_resid_mid"] - cache[f"blocks.{layer}.hook_resid_pre"]
        torch.testing.assert_close(resid, cache[f"blocks.{layer}.hook_attn_out"], atol=1e-5, rtol=0)


def test_bilinear_layers_are_hooked_bilinear_mlps_and_glu_stay_gated(checkpoint):
    folder, _, _ = checkpoint()
    assert all(isinstance(block.mlp, hb.HookedBilinearMLP) for block in load(folder).blocks)
    folder, _, _ = checkpoint(gate="silu", seed=1)
    assert not any(isinstance(block.mlp, hb.HookedBilinearMLP) for block in load(folder).blocks)


def test_weights_in_transformerlens_orientation(checkpoint):
    folder, config, state = checkpoint(bias=True)
    mlp = load(folder).blocks[1].mlp
    h = config["d_hidden"]
    w, p = state["transformer.h.1.mlp.w.weight"], state["transformer.h.1.mlp.p.weight"]
    assert torch.equal(mlp.W_gate, w[:h].T) and torch.equal(mlp.W_in, w[h:].T) and torch.equal(mlp.W_out, p.T)
    bias = state["transformer.h.1.mlp.w.bias"]
    assert torch.equal(mlp.b_gate, bias[:h]) and torch.equal(mlp.b_in, bias[h:])
    assert torch.equal(mlp.b_out, state["transformer.h.1.mlp.p.bias"])


def test_bin_weights_load(checkpoint, tokens):
    folder, config, state = checkpoint(weights="bin")
    got = load(folder)(tokens, return_type="logits")
    assert (got - reference_logits(state, config, tokens)).abs().max().item() <= 1e-5


def test_forced_format_and_own_saved_config(checkpoint, tokens, tmp_path):
    folder, config, state = checkpoint("legacy")
    bridge = load(folder, checkpoint_format="legacy")
    assert bridge.original_model.config.checkpoint_format == "legacy"
    # A model saved by transformers (model_type tdooms_bilinear) loads back through the Auto classes and here.
    from transformers import AutoModelForCausalLM

    saved = tmp_path / "saved"
    original = hb.BilinearForCausalLM(hb.BilinearConfig(vocab_size=50, d_model=32, d_hidden=48, n_layer=2, n_head=4))
    original.save_pretrained(saved)
    auto = AutoModelForCausalLM.from_pretrained(saved)
    assert isinstance(auto, hb.BilinearForCausalLM)
    torch.testing.assert_close(load(saved)(tokens, return_type="logits"), auto(tokens).logits, atol=1e-5, rtol=0)
