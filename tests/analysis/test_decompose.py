"""decompose: the contributions lambda_k (v_k . x')^2 sum to u . out(x)."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.analysis import decompose
from tests.analysis.factories import factors_of, mlp_forward, random_layer


@pytest.mark.parametrize("bias", [False, True])
def test_contributions_sum_to_the_output(bias):
    layer = random_layer(9, 20, bias, seed=2)
    x = torch.randn(4, 3, 9, dtype=torch.float64)
    u = torch.randn(9, dtype=torch.float64)
    result = decompose(factors_of(layer), x, u)
    assert result.contributions.shape == (4, 3, 9 + bias)
    torch.testing.assert_close(result.contributions.sum(-1), mlp_forward(layer, x) @ u, atol=1e-12, rtol=1e-10)


def test_batched_directions_and_partial_sums():
    layer = random_layer(9, 20, True, seed=3)
    x = torch.randn(5, 9, dtype=torch.float64)
    U = torch.randn(3, 9, dtype=torch.float64)
    full = decompose(factors_of(layer), x, U)
    assert full.contributions.shape == (5, 3, 10)
    torch.testing.assert_close(full.contributions.sum(-1), mlp_forward(layer, x) @ U.T, atol=1e-12, rtol=1e-10)
    top = decompose(factors_of(layer), x, U, k=4)
    torch.testing.assert_close(top.contributions, full.contributions[..., :4])


def test_input_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="d_model=9"):
        decompose(
            factors_of(random_layer(9, 20, False)),
            torch.randn(5, 8, dtype=torch.float64),
            torch.randn(9, dtype=torch.float64),
        )
