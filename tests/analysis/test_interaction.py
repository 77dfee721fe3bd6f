"""u . out(x) == x'^T Q_u x' exactly; B and its Gram matrix equal their brute-force definitions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hooked_bilinear.analysis import interaction_matrix, output_gram, tensor
from tests.analysis.factories import brute_force_tensor, factors_of, mlp_forward, random_layer


@settings(max_examples=60, deadline=None)
@given(
    d_model=st.integers(1, 12),
    d_hidden=st.integers(1, 20),
    bias=st.booleans(),
    n=st.integers(1, 4),
    batched=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_quadratic_form_identity_float64(d_model, d_hidden, bias, n, batched, seed):
    layer = random_layer(d_model, d_hidden, bias, seed)
    factors = factors_of(layer)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(5, d_model, generator=g, dtype=torch.float64)
    u = torch.randn(n if batched else 1, d_model, generator=g, dtype=torch.float64)
    Q = interaction_matrix(factors, u if batched else u[0])
    Q = Q if batched else Q[None]
    x_aug = torch.cat([x, torch.ones(5, 1, dtype=x.dtype)], 1) if bias else x
    quadratic = torch.einsum("bi,nij,bj->bn", x_aug, Q, x_aug)
    expected = mlp_forward(layer, x) @ u.T
    torch.testing.assert_close(quadratic, expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(Q, Q.mT, atol=0, rtol=0)


@pytest.mark.parametrize("bias", [False, True])
def test_tensor_is_the_definition_and_contracts_to_Q(bias):
    layer = random_layer(6, 9, bias, seed=3)
    B = tensor(factors_of(layer))
    torch.testing.assert_close(B, brute_force_tensor(layer), atol=1e-12, rtol=1e-12)
    u = torch.randn(6, dtype=torch.float64)
    torch.testing.assert_close(interaction_matrix(factors_of(layer), u), torch.einsum("o,oij->ij", u, B))


def test_tensor_refuses_above_the_memory_limit():
    factors = factors_of(random_layer(8, 8, False))
    with pytest.raises(MemoryError, match="max_bytes=None"):
        tensor(factors, max_bytes=100)
    assert tensor(factors, max_bytes=None).shape == (8, 8, 8)


@pytest.mark.parametrize("bias", [False, True])
def test_output_gram_equals_the_unfolding_gram(bias):
    layer = random_layer(5, 11, bias, seed=4)
    B = brute_force_tensor(layer).flatten(1)
    torch.testing.assert_close(output_gram(factors_of(layer)), B @ B.T, atol=1e-12, rtol=1e-10)


def test_memory_budget_batches_give_the_same_matrices():
    layer = random_layer(7, 13, True, seed=5)
    u = torch.randn(9, 7, dtype=torch.float64)
    whole = interaction_matrix(factors_of(layer), u)
    tiny = interaction_matrix(factors_of(layer), u, max_memory=1)  # one direction at a time
    torch.testing.assert_close(whole, tiny, atol=1e-14, rtol=0)
