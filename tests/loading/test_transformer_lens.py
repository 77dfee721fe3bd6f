"""TransformerLens's own checks pass on loaded bridges; patching runs and is right; generate and tokens work."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching

import hooked_bilinear as hb
from tests.llama import write_llama
from tests.reference import EMBEDDED, reference_logits
from tests.transformer_lens_checks import assert_transformer_lens_benchmarks_pass


@pytest.fixture(scope="module")
def tokenizer():
    return hb.from_pretrained(EMBEDDED).tokenizer


TEXT = "once upon a time , there was a red cat named lily ."


@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
@pytest.mark.parametrize(
    "fmt,overrides",
    [("current", {"bias": True}), ("legacy", {}), ("current", {"gate": "silu"})],
    ids=["current-bias", "legacy", "glu-silu"],
)
def test_transformer_lens_benchmarks_pass(checkpoint, tokenizer, fmt, overrides, compatibility_mode):
    folder, config, state = checkpoint(fmt, vocab=len(tokenizer), **overrides)
    bridge = hb.from_pretrained(folder, tokenizer=tokenizer, compatibility_mode=compatibility_mode)
    reference = reference_logits(state, config, bridge.to_tokens(TEXT))
    assert_transformer_lens_benchmarks_pass(bridge, TEXT, reference)


def test_patching_resid_pre_recovers_clean_metric():
    bridge = hb.from_pretrained(EMBEDDED)
    clean = bridge.to_tokens("one day , lily found a red ball in the park .")
    corrupted = bridge.to_tokens("one day , lily found a red kite in the park .")
    changed = (clean != corrupted).nonzero()[:, 1].tolist()
    assert len(changed) == 1 and clean.shape == corrupted.shape
    answer = clean[0, -1]
    clean_logits, clean_cache = bridge.run_with_cache(clean)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, -2].log_softmax(-1)[answer]

    clean_metric, corrupted_metric = metric(clean_logits).item(), metric(bridge(corrupted)).item()
    result = patching.get_act_patch_resid_pre(bridge, corrupted, clean_cache, metric)
    assert result.shape == (bridge.cfg.n_layers, clean.shape[1])
    # Layer 0 is the embedding: patching the one changed position restores the clean run exactly.
    assert result[0, changed[0]].item() == pytest.approx(clean_metric, abs=1e-5)
    unchanged = [p for p in range(clean.shape[1]) if p != changed[0]]
    torch.testing.assert_close(result[0, unchanged], torch.full((len(unchanged),), corrupted_metric), atol=1e-5, rtol=0)


def test_patching_mlp_out_matches_hand_patching():
    bridge = hb.from_pretrained(EMBEDDED)
    clean = bridge.to_tokens("one day , lily found a red ball in the park .")
    corrupted = bridge.to_tokens("one day , lily found a red kite in the park .")
    answer = clean[0, -1]
    _, clean_cache = bridge.run_with_cache(clean)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, -2].log_softmax(-1)[answer]

    result = patching.get_act_patch_mlp_out(bridge, corrupted, clean_cache, metric)
    for layer in range(bridge.cfg.n_layers):
        for pos in (0, 7, clean.shape[1] - 2):
            name = f"blocks.{layer}.hook_mlp_out"

            def patch(activation: torch.Tensor, hook, pos=pos, name=name) -> torch.Tensor:
                activation[:, pos] = clean_cache[name][:, pos]
                return activation

            expected = metric(bridge.run_with_hooks(corrupted, fwd_hooks=[(name, patch)])).item()
            assert result[layer, pos].item() == pytest.approx(expected, abs=1e-5)
    # Patching every layer's MLP output at every position moves the metric toward the clean one.
    everywhere = [
        (f"blocks.{layer}.hook_mlp_out", lambda a, hook: clean_cache[hook.name]) for layer in range(bridge.cfg.n_layers)
    ]
    patched = metric(bridge.run_with_hooks(corrupted, fwd_hooks=everywhere)).item()
    everywhere_resid = [("blocks.0.hook_resid_pre", lambda a, hook: clean_cache[hook.name])]
    assert metric(bridge.run_with_hooks(corrupted, fwd_hooks=everywhere_resid)).item() == pytest.approx(
        metric(bridge(clean)).item(), abs=1e-5
    )
    assert abs(patched - metric(bridge(clean)).item()) < abs(
        metric(bridge(corrupted)).item() - metric(bridge(clean)).item()
    )


@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
@pytest.mark.parametrize("fmt", ["current", "legacy"])
def test_patching_resid_mid_patches_the_residual_stream(checkpoint, tokenizer, fmt, compatibility_mode):
    """As in HookedTransformer, hook_resid_mid is the residual itself: a patch there reaches the MLP's input and
    the residual the MLP's output is added to. Patching it at every position with the clean run's value makes
    every later activation, and the logits, the clean run's."""
    folder, _, _ = checkpoint(fmt, vocab=len(tokenizer))
    bridge = hb.from_pretrained(folder, tokenizer=tokenizer, compatibility_mode=compatibility_mode)
    clean = bridge.to_tokens("one day , lily found a red ball in the park .")
    corrupted = bridge.to_tokens("one day , lily found a red kite in the park .")
    clean_logits, clean_cache = bridge.run_with_cache(clean)
    for layer in range(bridge.cfg.n_layers):
        seen: dict[str, torch.Tensor] = {}

        def patch(activation: torch.Tensor, hook, layer=layer) -> torch.Tensor:
            assert hook.name == f"blocks.{layer}.hook_resid_mid"
            return clean_cache[hook.name]

        def keep(activation: torch.Tensor, hook, seen=seen) -> torch.Tensor:
            seen["resid_post"] = activation.clone()
            return activation

        logits = bridge.run_with_hooks(
            corrupted,
            fwd_hooks=[(f"blocks.{layer}.hook_resid_mid", patch), (f"blocks.{layer}.hook_resid_post", keep)],
        )
        torch.testing.assert_close(seen["resid_post"], clean_cache[f"blocks.{layer}.hook_resid_post"])
        torch.testing.assert_close(logits, clean_logits)
    answer = clean[0, -1]

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, -2].log_softmax(-1)[answer]

    result = patching.get_act_patch_resid_mid(bridge, corrupted, clean_cache, metric)  # TransformerLens's own
    changed = int((clean != corrupted).nonzero()[0, 1])
    for layer in range(bridge.cfg.n_layers):
        for pos in (changed, clean.shape[1] - 2):

            def patch_one(activation: torch.Tensor, hook, pos=pos) -> torch.Tensor:
                activation[:, pos] = clean_cache[hook.name][:, pos]
                return activation

            patched = bridge.run_with_hooks(corrupted, fwd_hooks=[(f"blocks.{layer}.hook_resid_mid", patch_one)])
            assert result[layer, pos].item() == pytest.approx(metric(patched).item(), abs=1e-5)
    # The last position that reads the answer, patched in the last layer, is the clean run there.
    assert result[-1, -2].item() == pytest.approx(metric(clean_logits).item(), abs=1e-5)


def test_generate_and_token_round_trip():
    bridge = hb.from_pretrained(EMBEDDED)
    tokens = bridge.to_tokens("once upon a time")
    assert tokens[0, 0].item() == bridge.tokenizer.convert_tokens_to_ids("[BOS]")
    assert bridge.to_string(tokens[0, 1:]) == "once upon a time"
    out = bridge.generate("once upon a time", max_new_tokens=8, do_sample=False, verbose=False)
    assert isinstance(out, str) and out.startswith("once upon a time") and len(out.split()) > 4
    # Greedy generation with the KV cache equals greedy decoding without it, token by token.
    generated = bridge.generate(tokens, max_new_tokens=6, do_sample=False, verbose=False, use_past_kv_cache=True)
    manual = tokens
    for _ in range(6):
        manual = torch.cat([manual, bridge(manual)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, manual)


# the rotary embedding's input: hidden states it reads the dtype and device of only (positions come separately)
OFF_THE_PATH = ("rotary_emb.hook_in",)


@pytest.mark.parametrize("source", ["tdooms", "llama"])
def test_an_intervention_on_every_hook_reaches_the_output(tmp_path, tokenizer, source):
    """Every hook's return value is what the model goes on with: returning a copy changes nothing, returning it
    perturbed changes the logits (the rotary hooks included), and a residual-stream hook patched with another
    input's activations gives that input's logits."""
    folder = EMBEDDED if source == "tdooms" else write_llama(tmp_path)[0]
    bridge = hb.from_pretrained(folder, tokenizer=tokenizer)
    tokens = bridge.to_tokens("one day , lily found a red ball in the park .")
    other = bridge.to_tokens("one day , lily found a red kite in the park .")
    assert tokens.shape == other.shape
    logits, cache = bridge.run_with_cache(tokens)
    other_logits, other_cache = bridge.run_with_cache(other)
    names = [name for name in cache.keys() if cache[name].is_floating_point()]
    assert {"blocks.0.attn.hook_rot_q", "blocks.1.attn.hook_rot_k", "blocks.1.mlp.hook_pre"} <= set(names)
    g = torch.Generator().manual_seed(0)
    failures = []
    for name in names:
        same = bridge.run_with_hooks(tokens, fwd_hooks=[(name, lambda x, hook: x.clone())])
        assert (same - logits).abs().max() <= 1e-5, name
        noise = 0.2 * (cache[name].std() + 1e-3) * torch.randn(cache[name].shape, generator=g)
        moved = bridge.run_with_hooks(tokens, fwd_hooks=[(name, lambda x, hook, noise=noise: x + noise.to(x.dtype))])
        if (moved - logits).abs().max() <= 1e-3:
            failures.append(name)
    assert failures == list(OFF_THE_PATH), "an intervention there does not reach the output"
    for layer in range(bridge.cfg.n_layers):
        for name in (f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.hook_resid_post"):
            patched = bridge.run_with_hooks(tokens, fwd_hooks=[(name, lambda x, hook: other_cache[hook.name])])
            assert (patched - other_logits).abs().max() <= 1e-4, name
