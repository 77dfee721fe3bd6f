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
