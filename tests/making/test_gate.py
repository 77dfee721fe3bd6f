"""The annealed gate x * sigmoid(beta x) and its schedule beta = 1 - alpha(t)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hooked_bilinear.making.gate import AnnealedGate, alpha, beta_at


def test_gate_endpoints_are_silu_and_half():
    x = torch.randn(100, dtype=torch.float64)
    gate = AnnealedGate(1.0)
    torch.testing.assert_close(gate(x), F.silu(x), atol=1e-15, rtol=1e-15)
    gate.beta.fill_(0.0)
    assert torch.equal(gate(x), x / 2)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_goes_from_one_to_zero_monotonically(schedule):
    betas = [beta_at(step, 100, schedule) for step in range(0, 130)]
    assert betas[0] == 1.0 and betas[100] == 0.0 and betas[-1] == 0.0
    assert all(a >= b for a, b in zip(betas, betas[1:]))
    assert alpha(50, 100, schedule) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="schedule"):
        alpha(1, 10, "step")


def test_exp_schedule_of_the_authors_code():
    """alpha(f) = min(f e^{1.05 (1 - f)}, 1): 0.845 at half way, capped at 1 from f ~ 0.91, monotone."""
    assert alpha(50, 100, "exp") == pytest.approx(0.5 * 2.718281828**0.525)
    alphas = [alpha(step, 100, "exp") for step in range(101)]
    assert alphas[0] == 0.0 and alphas[91] == 1.0 and alphas[90] < 1.0 and alphas[100] == 1.0
    assert all(a <= b for a, b in zip(alphas, alphas[1:]))
