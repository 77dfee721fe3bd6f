"""The identities hold on the activations a hooked model caches: u . mlp(x) = x'^T Q_u x' and decompose sums to it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.analysis.models import random_model


@settings(max_examples=8, deadline=None)
@given(
    d_model=st.sampled_from([16, 24, 32]),
    d_hidden=st.integers(8, 64),
    bias=st.booleans(),
    compat=st.booleans(),
    n=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_identity_on_cached_activations_float32(d_model, d_hidden, bias, compat, n, seed):
    model, _, _ = random_model(d_model=d_model, d_hidden=d_hidden, bias=bias, compat=compat, seed=seed, n_layer=2)
    tokens = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(seed))
    _, cache = model.run_with_cache(tokens)
    u = torch.randn(n, d_model, generator=torch.Generator().manual_seed(seed + 1))
    for layer in range(2):
        mlp = model.blocks[layer].mlp
        x, out = cache[f"blocks.{layer}.mlp.hook_in"], cache[f"blocks.{layer}.mlp.hook_out"]
        Q = mlp.interaction_matrix(u)
        x_aug = torch.cat([x, torch.ones_like(x[..., :1])], -1) if bias else x
        quadratic = torch.einsum("bpi,nij,bpj->bpn", x_aug, Q, x_aug)
        expected = out @ u.T
        assert ((quadratic - expected).abs().max() / expected.abs().max()).item() <= 1e-4
        contributions = mlp.decompose(x, u).contributions.sum(-1)
        assert ((contributions - expected).abs().max() / expected.abs().max()).item() <= 1e-4


@pytest.mark.smoke
@pytest.mark.parametrize("bias", [False, True])
def test_identity_float64(bias):
    model, _, _ = random_model(d_model=32, d_hidden=48, bias=bias, dtype=torch.float64)
    tokens = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(tokens)
    u = torch.randn(4, 32, dtype=torch.float64)
    x, out = cache["blocks.1.mlp.hook_in"], cache["blocks.1.mlp.hook_out"]
    Q = model.blocks[1].mlp.interaction_matrix(u)
    assert Q.dtype == torch.float64
    x_aug = torch.cat([x, torch.ones_like(x[..., :1])], -1) if bias else x
    quadratic = torch.einsum("bpi,nij,bpj->bpn", x_aug, Q, x_aug)
    expected = out @ u.T
    assert ((quadratic - expected).abs().max() / expected.abs().max()).item() <= 1e-10


def test_methods_agree_with_tensor_and_refuse_non_finite_weights():
    model, _, _ = random_model(d_model=16, d_hidden=24, bias=True, dtype=torch.float64)
    mlp = model.blocks[0].mlp
    u = torch.randn(16, dtype=torch.float64)
    torch.testing.assert_close(torch.einsum("o,oij->ij", u, mlp.tensor()), mlp.interaction_matrix(u))
    with torch.no_grad():
        model.blocks[0].mlp.out.original_component.weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN/inf"):
        mlp.eigendecompose(u, k=2)
