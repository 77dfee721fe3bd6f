"""Every interval operation contains the exact real result (checked with exact rationals / 60-digit decimals) at the
corners and midpoints of its operand balls, including radii and ill-conditioned sums."""

from __future__ import annotations

import itertools
from decimal import Decimal, getcontext
from fractions import Fraction

import pytest
import torch

from hooked_bilinear.toy.modadd import interval as iv
from hooked_bilinear.toy.modadd.interval import Ball, Ledger


def _points(ball: Ball, i: int) -> list[Fraction]:
    """Element i's midpoint and the two ends of its interval, as exact rationals."""
    mid, rad = Fraction(ball.mid.flatten()[i].item()), Fraction(ball.rad.expand_as(ball.mid).flatten()[i].item())
    return [mid, mid - rad, mid + rad]


def _contains(ball: Ball, exact: list[Fraction], index: int) -> bool:
    lo, hi = ball.lower().flatten()[index].item(), ball.upper().flatten()[index].item()
    return all(Fraction(lo) <= value <= Fraction(hi) for value in exact)


def _random_ball(shape: tuple[int, ...], seed: int, radius: float) -> Ball:
    g = torch.Generator().manual_seed(seed)
    mid = torch.randn(shape, generator=g, dtype=torch.float64) * 10 ** torch.randint(-3, 4, shape, generator=g)
    return Ball(mid, radius * torch.rand(shape, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("radius", [0.0, 1e-9, 1e-3])
def test_add_sub_mul_contain_the_exact_result(radius):
    x, y = _random_ball((40,), 0, radius), _random_ball((40,), 1, radius)
    ledger = Ledger()
    for op, exact in ((iv.add, lambda a, b: a + b), (iv.sub, lambda a, b: a - b), (iv.mul, lambda a, b: a * b)):
        out = op(x, y, ledger)
        for i in range(40):
            values = [exact(a, b) for a, b in itertools.product(_points(x, i), _points(y, i))]
            assert _contains(out, values, i), op.__name__
    assert ledger.total > 0


def test_einsum_contains_the_exact_dot_products_even_under_cancellation():
    g = torch.Generator().manual_seed(2)
    big = torch.randn(6, 300, generator=g, dtype=torch.float64) * 1e8
    x = Ball.exact(torch.cat([big, -big, torch.randn(6, 5, generator=g, dtype=torch.float64)], 1))
    y = Ball.exact(torch.cat([torch.ones(605, 4, dtype=torch.float64)], 0) + 1e-3)
    out = iv.einsum("ik,kj->ij", x, y, Ledger())
    for i, j in itertools.product(range(6), range(4)):
        exact = sum(Fraction(a) * Fraction(b) for a, b in zip(x.mid[i].tolist(), y.mid[:, j].tolist()))
        assert _contains(out, [exact], i * 4 + j)
    assert (out.rad > 0).all(), "cancelling sums must carry a rounding radius"


def test_exp_and_reciprocal_contain_the_exact_values():
    getcontext().prec = 60
    x = _random_ball((30,), 3, 1e-6)
    x = Ball(x.mid.clamp(-20, 20), x.rad)
    ledger = Ledger()
    e = iv.exp(x, ledger)
    for i in range(30):
        values = [Fraction((Decimal(v.numerator) / Decimal(v.denominator)).exp()) for v in _points(x, i)]
        assert _contains(e, values, i)
    positive = Ball(x.mid.abs() + 1e-3, x.rad * 1e-3)
    r = iv.reciprocal(positive, ledger)
    for i in range(30):
        assert _contains(r, [1 / v for v in _points(positive, i)], i)
    with pytest.raises(ArithmeticError, match="contains 0"):
        iv.reciprocal(Ball(torch.tensor([1.0, 0.5], dtype=torch.float64), torch.tensor(0.7)), ledger)


def test_sum_contains_the_exact_sum():
    x = _random_ball((7, 50), 4, 1e-4)
    out = iv.sum_(x, 1, Ledger())
    for i in range(7):
        corners = [[_points(x, i * 50 + j)[end] for j in range(50)] for end in range(3)]
        assert _contains(out, [sum(row) for row in corners], i)
