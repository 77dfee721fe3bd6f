"""hosvd: on a layer whose B is low-rank in its output mode, r directions recover B exactly."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.analysis import hosvd
from tests.analysis.factories import brute_force_tensor, factors_of, random_layer


@pytest.mark.parametrize("bias", [False, True])
def test_low_rank_B_is_recovered(bias):
    d_model, d_hidden, r = 10, 24, 3
    layer = random_layer(d_model, d_hidden, bias, seed=5)
    g = torch.Generator().manual_seed(6)
    U_true = torch.linalg.qr(torch.randn(d_model, r, generator=g, dtype=torch.float64)).Q  # [d_model, r]
    layer["W_out"] = torch.randn(d_hidden, r, generator=g, dtype=torch.float64) @ U_true.T  # output rank r
    if bias:
        layer["b_out"] = U_true @ torch.randn(r, generator=g, dtype=torch.float64)
    B = brute_force_tensor(layer)
    result = hosvd(factors_of(layer), r)
    rebuilt = torch.einsum("ro,rk,rki,rkj->oij", result.u, result.lambda_, result.v, result.v)
    torch.testing.assert_close(rebuilt, B, atol=1e-11, rtol=1e-9)
    # the directions span the true output space, and nothing is left beyond rank r
    torch.testing.assert_close(result.u.T @ result.u, U_true @ U_true.T, atol=1e-10, rtol=0)
    sigma = hosvd(factors_of(layer), r + 1, k=1).sigma
    assert sigma[-1] < 1e-6 * sigma[0]
    torch.testing.assert_close(result.sigma.square().sum(), B.square().sum(), atol=1e-10, rtol=1e-10)


def test_r_out_of_range_is_refused():
    with pytest.raises(ValueError, match="1 <= r <= 6"):
        hosvd(factors_of(random_layer(6, 8, False)), 7)


def eigenpairs_by_magnitude(Q: torch.Tensor, k: int) -> torch.Tensor:
    """The k eigenvalues of largest |lambda| of the explicit symmetric Q, by |lambda| descending."""
    lam = torch.linalg.eigvalsh(Q)
    return lam[lam.abs().argsort(descending=True)[:k]]


@pytest.mark.parametrize("r", [1, 6])
def test_every_r_from_one_to_d_out_is_accepted(r):
    """r = 1 and r = d_out are both in range; with r = d_out the directions are a full orthonormal basis, so the
    sum over all of them rebuilds B and the singular values hold all its energy."""
    layer = random_layer(6, 8, True, seed=9)
    B = brute_force_tensor(layer)
    result = hosvd(factors_of(layer), r)
    assert result.u.shape == (r, 6) and result.lambda_.shape == (r, 7)
    torch.testing.assert_close(result.u @ result.u.T, torch.eye(r, dtype=torch.float64), atol=1e-12, rtol=0)
    # sigma_i^2 = ||Q_{u_i}||_F^2 = ||sum_o u_io B[o]||_F^2, the definition of the output-mode singular values
    energy = torch.einsum("ro,oij->rij", result.u, B).square().sum((1, 2))
    torch.testing.assert_close(result.sigma.square(), energy, atol=1e-12, rtol=1e-10)
    assert (result.sigma.diff() <= 1e-12).all(), "singular values descending"
    if r == 6:
        rebuilt = torch.einsum("ro,rk,rki,rkj->oij", result.u, result.lambda_, result.v, result.v)
        torch.testing.assert_close(rebuilt, B, atol=1e-12, rtol=1e-10)


def test_r_zero_is_refused():
    with pytest.raises(ValueError, match="1 <= r <= 6"):
        hosvd(factors_of(random_layer(6, 8, False)), 0)


def test_k_eigenpairs_per_direction_are_the_top_k_of_each_Q():
    """k limits each direction to its k eigenpairs of largest |lambda|, those of the explicit Q_{u_i}."""
    layer = random_layer(6, 8, False, seed=2)
    B = brute_force_tensor(layer)
    result = hosvd(factors_of(layer), 3, k=2)
    assert result.lambda_.shape == (3, 2) and result.v.shape == (3, 2, 6)
    for i in range(3):
        Q = torch.einsum("o,oij->ij", result.u[i], B)
        torch.testing.assert_close(result.lambda_[i], eigenpairs_by_magnitude(Q, 2), atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(result.v[i] @ Q, result.lambda_[i, :, None] * result.v[i], atol=1e-12, rtol=0)
