"""Splicing an SAE into a bridge: the hook computes the reconstruction, the error term restores the clean run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "analysis"))
from hooked_bilinear import sae as S
from hooked_bilinear.errors import SAEError
from hooked_bilinear.sae.splice import splice, splice_loss
from tests.analysis.models import random_model

HOOK = "blocks.1.mlp.hook_in"


@pytest.fixture(scope="module")
def setup():
    model, _, _ = random_model(vocab=40, d_model=16, d_hidden=24)
    g = torch.Generator().manual_seed(0)
    sae = S.TopKSAE(16, 64, k=6, metadata={"hook_name": HOOK})
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    tokens = torch.randint(0, 40, (3, 10), generator=g)
    return model, sae.requires_grad_(False), tokens


def test_splice_replaces_activations_by_the_reconstruction(setup) -> None:
    model, sae, tokens = setup
    _, clean = model.run_with_cache(tokens, names_filter=HOOK)
    seen = {}

    def record(x, hook):
        seen["x"] = x.clone()

    with splice(model, sae):
        logits = model(tokens)
    expected = sae.decode(sae.encode(clean[HOOK]))
    manual = model.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda x, hook: sae.decode(sae.encode(x)))])
    torch.testing.assert_close(logits, manual, rtol=0, atol=0)
    model.run_with_hooks(
        tokens, fwd_hooks=[(HOOK, lambda x, hook: sae.decode(sae.encode(x))), ("blocks.1.mlp.hook_in", record)]
    )
    torch.testing.assert_close(seen["x"], expected)
    assert not torch.allclose(logits, model(tokens))  # the hook is gone after the block
    clean_logits = model(tokens)
    with splice(model, sae, use_error_term=True):
        torch.testing.assert_close(model(tokens), clean_logits, rtol=1e-5, atol=1e-5)


def test_splice_loss(setup) -> None:
    model, sae, tokens = setup
    loss = splice_loss(model, sae, tokens, batch_size=2)
    assert loss.clean == pytest.approx(model(tokens, return_type="loss").item(), rel=1e-5)
    with splice(model, sae):
        assert loss.spliced == pytest.approx(model(tokens, return_type="loss").item(), rel=1e-5)
    assert loss.added == pytest.approx(loss.spliced - loss.clean)


def test_splice_errors(setup) -> None:
    model, sae, tokens = setup
    wrong = S.TopKSAE(17, 32, k=3, metadata={"hook_name": HOOK})
    with pytest.raises(SAEError, match="d_in=17.*size 16"), splice(model, wrong):
        model(tokens)
    with (
        pytest.raises(SAEError, match="no hook 'blocks.9.mlp.hook_in'"),
        splice(model, sae, hook_name="blocks.9.mlp.hook_in"),
    ):
        pass
    with pytest.raises(SAEError, match="hook_name="):
        splice_loss(model, S.TopKSAE(16, 32, k=3), tokens)


def test_cached_and_feature_activations(setup) -> None:
    from hooked_bilinear import analysis as A
    from hooked_bilinear.sae.train import cache_activations

    model, sae, tokens = setup
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    flat = cache_activations(model, tokens, HOOK, batch_size=2)
    torch.testing.assert_close(flat, cache[HOOK].reshape(-1, 16))
    feats = A.feature_activations(model, sae, tokens, features=[3, 5], batch_size=2)
    torch.testing.assert_close(feats, sae.encode(cache[HOOK])[..., [3, 5]])
    with pytest.raises(SAEError, match="no hook"):
        cache_activations(model, tokens, "blocks.7.hook_nothing")


def test_splice_loss_parts_against_manual_runs(setup) -> None:
    from types import SimpleNamespace

    from hooked_bilinear.sae.splice import SpliceLoss, splice_hook

    model, sae, tokens = setup
    unnamed = S.TopKSAE(16, 64, k=6)  # no hook name recorded: the caller's hook_name= is used
    with torch.no_grad():
        for mine, theirs in zip(unnamed.parameters(), sae.parameters(), strict=True):
            mine.copy_(theirs)
    loss = splice_loss(model, unnamed, tokens, hook_name=HOOK)
    zero = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(HOOK, lambda x, hook: torch.zeros_like(x))])
    assert loss.zero_ablated == pytest.approx(zero.item(), rel=1e-6)
    assert loss.zero_ablated > loss.clean  # ablating the MLP input hurts this model
    assert loss.recovered == pytest.approx((loss.zero_ablated - loss.spliced) / (loss.zero_ablated - loss.clean))
    assert SpliceLoss(2.0, 3.0, 6.0).recovered == 0.75  # a quarter of the ablation's loss not recovered
    with pytest.raises(SAEError) as info:
        splice_loss(model, SimpleNamespace(encode=sae.encode, decode=sae.decode), tokens)  # an SAE without hook_name
    assert str(info.value) == "this SAE does not say which hook it reads (metadata hook_name): pass hook_name=."
    wide = S.TopKSAE(16, 64, k=6, dtype=torch.float64)
    x = torch.randn(2, 16)
    assert splice_hook(wide)(x).dtype == torch.float32  # the model's activation dtype is kept


def test_cache_activations_more_sequences_than_positions(setup) -> None:
    from hooked_bilinear.sae.train import cache_activations

    model, _, _ = setup
    tokens = torch.randint(0, 40, (5, 3), generator=torch.Generator().manual_seed(4))  # batches of 2, 2, 1 sequences
    _, cache = model.run_with_cache(tokens, names_filter=HOOK)
    torch.testing.assert_close(cache_activations(model, tokens, HOOK, batch_size=2), cache[HOOK].reshape(-1, 16))
    with pytest.raises(ValueError) as info:
        cache_activations(model, tokens[0], HOOK)
    assert str(info.value) == "tokens must be [n_seq, pos], got shape (3,)."
    with pytest.raises(ValueError, match="vocab"):  # an id outside the vocabulary of 40
        cache_activations(model, torch.full((2, 3), 40), HOOK)
