"""HookedBilinearMLP computes W_out((W_gate x + b_gate) * (W_in x + b_in)) + b_out, hooks included, in every mode."""

from __future__ import annotations

import warnings

import pytest
import torch

import hooked_bilinear as hb


def load(folder, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hb.from_pretrained(folder, **kwargs)


@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_is_the_bilinear_form(checkpoint, compatibility_mode, bias):
    folder, config, state = checkpoint(bias=bias)
    mlp = load(folder, compatibility_mode=compatibility_mode).blocks[0].mlp
    h = config["d_hidden"]
    w, p = state["transformer.h.0.mlp.w.weight"], state["transformer.h.0.mlp.p.weight"]
    b_w = state.get("transformer.h.0.mlp.w.bias", torch.zeros(2 * h))
    b_p = state.get("transformer.h.0.mlp.p.bias", torch.zeros(config["d_model"]))
    x = torch.randn(3, 5, config["d_model"], generator=torch.Generator().manual_seed(0))
    expected = ((x @ w[:h].T + b_w[:h]) * (x @ w[h:].T + b_w[h:])) @ p.T + b_p
    torch.testing.assert_close(mlp(x), expected, atol=1e-5, rtol=1e-5)


def test_hook_post_intervention_reaches_the_output(checkpoint):
    folder, config, _ = checkpoint(bias=True)
    bridge = load(folder)
    mlp = bridge.blocks[0].mlp
    x = torch.randn(2, 4, config["d_model"])
    mlp.hook_post.add_hook(lambda act, hook: torch.zeros_like(act))
    try:
        torch.testing.assert_close(mlp(x), mlp.b_out.expand(2, 4, -1), atol=1e-6, rtol=0)
    finally:
        mlp.hook_post.remove_hooks()
    assert not torch.allclose(mlp(x), mlp.b_out.expand(2, 4, -1))


def test_no_activation_is_ever_resolved(checkpoint):
    folder, _, _ = checkpoint()
    mlp = load(folder, compatibility_mode=True).blocks[0].mlp
    with pytest.raises(RuntimeError, match="^HookedBilinearMLP has no activation function.$"):
        mlp._resolve_activation_fn()


def test_stock_silu_fallback_would_show(checkpoint, tokens):
    """The fidelity tests can see a SiLU fallback: it changes the logits far beyond 1e-5."""
    from tests.reference import reference_logits

    folder, config, state = checkpoint()
    bridge = load(folder)
    expected = reference_logits(state, config, tokens)
    for block in bridge.blocks:
        block.mlp.hook_pre.add_hook(lambda act, hook: torch.nn.functional.silu(act))
    try:
        assert (bridge(tokens, return_type="logits") - expected).abs().max().item() > 1e-2
    finally:
        bridge.reset_hooks()


def test_shapes_are_checked_at_run_time(checkpoint):
    folder, config, _ = checkpoint()
    mlp = load(folder).blocks[0].mlp
    from jaxtyping import TypeCheckError

    with pytest.raises(TypeCheckError):
        mlp(torch.randn(4, config["d_model"]))  # no position axis


def test_the_fused_mlp_keeps_the_bridge_config(checkpoint):
    """The fused (tdooms) bilinear MLP is built with the model's TransformerLens config, as the gated bridges are."""
    folder, _, _ = checkpoint()
    bridge = load(folder)
    assert type(bridge.blocks[0].mlp).__name__ == "FusedHookedBilinearMLP"
    assert bridge.blocks[0].mlp.config is not None and bridge.blocks[0].mlp.config == bridge.cfg
