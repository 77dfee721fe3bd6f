"""Every interval operation contains the exact real result (checked with exact rationals / 60-digit decimals) at the
corners and midpoints of its operand balls, including radii and ill-conditioned sums."""

from __future__ import annotations

import itertools
import math
import random
from decimal import Decimal, getcontext
from fractions import Fraction

import mpmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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
    with pytest.raises(ArithmeticError, match=r"^reciprocal of an interval that contains 0 or negative values\.$"):
        iv.reciprocal(Ball(torch.tensor([1.0, 0.5], dtype=torch.float64), torch.tensor(0.7)), ledger)


def test_sum_contains_the_exact_sum():
    x = _random_ball((7, 50), 4, 1e-4)
    out = iv.sum_(x, 1, Ledger())
    for i in range(7):
        corners = [[_points(x, i * 50 + j)[end] for j in range(50)] for end in range(3)]
        assert _contains(out, [sum(row) for row in corners], i)


# Property tests: for random operand balls (zero, rounding-sized and large radii, up to several times the midpoint),
# random reals sampled inside the operands (corners included) give exact results inside the output ball.

RADII = st.sampled_from([0.0, 1e-12, 1e-3, 0.5, 3.0, 100.0])


def _ball_of(values: list[tuple[float, float]], shape: tuple[int, ...]) -> Ball:
    mid = torch.tensor([m for m, _ in values], dtype=torch.float64).reshape(shape)
    rad = torch.tensor([r for _, r in values], dtype=torch.float64).reshape(shape)
    return Ball(mid, rad)


@st.composite
def balls(draw, shape: tuple[int, ...]) -> Ball:
    """A ball of `shape` with midpoints of any size and sign; radius zero, rounding-sized or large, per element or
    one scalar for all (as `Ball.exact` makes)."""
    n = math.prod(shape)
    mids = draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False), min_size=n, max_size=n))
    if draw(st.booleans()):
        return Ball(
            torch.tensor(mids, dtype=torch.float64).reshape(shape), torch.tensor(draw(RADII), dtype=torch.float64)
        )
    scale = draw(RADII)
    fractions = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    return _ball_of([(m, scale * f * (1 + abs(m))) for m, f in zip(mids, fractions)], shape)


def _sample(ball: Ball, rng: random.Random) -> list[Fraction]:
    """One real per element inside the ball (exact rationals): a corner or a uniform point, chosen at random."""
    mids, rads = ball.mid.flatten().tolist(), ball.rad.expand_as(ball.mid).flatten().tolist()
    out = []
    for m, r in zip(mids, rads):
        t = rng.choice([Fraction(-1), Fraction(1), Fraction(0), Fraction(rng.random() * 2 - 1)])
        out.append(Fraction(m) + t * Fraction(r))
    return out


def _within(ball: Ball, values: list[Fraction]) -> bool:
    lo, hi = ball.lower().flatten().tolist(), ball.upper().flatten().tolist()
    return all(Fraction(low) <= v <= Fraction(high) for low, v, high in zip(lo, values, hi))


SAMPLES = 6  # points drawn inside the operands per example


@settings(max_examples=40, deadline=None)
@given(x=balls((5,)), y=balls((5,)), seed=st.integers(0, 2**32 - 1))
def test_add_sub_mul_lower_upper_magnitude_are_sound_for_points_inside(x, y, seed):
    rng, ledger = random.Random(seed), Ledger()
    out = {name: op(x, y, ledger) for name, op in (("add", iv.add), ("sub", iv.sub), ("mul", iv.mul))}
    magnitude = x.magnitude().tolist()
    for _ in range(SAMPLES):
        a, b = _sample(x, rng), _sample(y, rng)
        assert _within(x, a), "lower() / upper() miss a point of the ball"
        assert all(abs(v) <= Fraction(m) for v, m in zip(a, magnitude)), "magnitude() below |x|"
        assert _within(out["add"], [u + v for u, v in zip(a, b)])
        assert _within(out["sub"], [u - v for u, v in zip(a, b)])
        assert _within(out["mul"], [u * v for u, v in zip(a, b)])


def _exact_einsum(spec: str, a: list[Fraction], a_shape, b: list[Fraction], b_shape) -> list[Fraction]:
    """einsum over exact rationals, by enumerating every index (row-major output)."""
    inputs, output = spec.split("->")
    ta, tb = inputs.split(",")
    sizes = dict(zip(ta, a_shape)) | dict(zip(tb, b_shape))
    letters = sorted(sizes)
    result: dict[tuple[int, ...], Fraction] = {}
    for values in itertools.product(*(range(sizes[letter]) for letter in letters)):
        at = dict(zip(letters, values))
        ia = sum(at[letter] * math.prod(a_shape[k + 1 :]) for k, letter in enumerate(ta))
        ib = sum(at[letter] * math.prod(b_shape[k + 1 :]) for k, letter in enumerate(tb))
        key = tuple(at[letter] for letter in output)
        result[key] = result.get(key, Fraction(0)) + a[ia] * b[ib]
    return [result[key] for key in itertools.product(*(range(sizes[letter]) for letter in output))]


# the contractions the certificate uses, on small shapes
EINSUMS = [
    ("i,i->", (3,), (3,)),
    ("ik,kj->ij", (2, 3), (3, 2)),
    ("ai,an->in", (3, 2), (3, 2)),
    ("in,jn->ijn", (2, 2), (2, 2)),
    ("ijh,ch->ijc", (2, 1, 3), (2, 3)),
    ("ajc,bj->abc", (2, 2, 2), (2, 2)),
    ("ibc,ai->abc", (2, 2, 2), (2, 2)),
    ("ij,j->", (2, 3), (3,)),  # an index summed in one operand only (i): the radius term counts its size
    ("ijk,k->", (2, 2, 3), (3,)),
]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), which=st.integers(0, len(EINSUMS) - 1), seed=st.integers(0, 2**32 - 1))
def test_einsum_is_sound_for_points_inside_both_operands(data, which, seed):
    spec, x_shape, y_shape = EINSUMS[which]
    x, y = data.draw(balls(x_shape)), data.draw(balls(y_shape))
    out, rng = iv.einsum(spec, x, y, Ledger()), random.Random(seed)
    for _ in range(SAMPLES):
        exact = _exact_einsum(spec, _sample(x, rng), x_shape, _sample(y, rng), y_shape)
        assert _within(out, exact), spec


def test_einsum_of_two_inexact_operands_covers_the_product_of_their_radii():
    """x = [1, 1, 1] +- 0.5: x . x reaches 3 * 1.5^2 = 6.75 (the r_x r_y term of the radius)."""
    x = Ball(torch.ones(3, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64))
    out = iv.einsum("i,i->", x, x, Ledger())
    assert out.upper().item() >= 6.75 and out.lower().item() <= 0.75


@settings(max_examples=40, deadline=None)
@given(x=balls((3, 4)), seed=st.integers(0, 2**32 - 1))
def test_sum_is_sound_for_points_inside(x, seed):
    rng = random.Random(seed)
    for dim in (0, 1):
        out = iv.sum_(x, dim, Ledger())
        for _ in range(SAMPLES):
            values = _sample(x, rng)
            rows = [[values[i * 4 + j] for j in range(4)] for i in range(3)]
            exact = [sum(r[j] for r in rows) for j in range(4)] if dim == 0 else [sum(r) for r in rows]
            assert _within(out, exact)


@settings(max_examples=40, deadline=None)
@given(mids=st.lists(st.floats(-30, 30), min_size=4, max_size=4), radius=RADII, seed=st.integers(0, 2**32 - 1))
def test_exp_and_reciprocal_are_sound_for_points_inside(mids, radius, seed):
    mpmath.mp.dps = 60
    rng, ledger = random.Random(seed), Ledger()
    x = Ball(torch.tensor(mids, dtype=torch.float64), torch.tensor(min(radius, 5.0), dtype=torch.float64))
    e = iv.exp(x, ledger)
    for _ in range(SAMPLES):
        point = _sample(x, rng)
        lo, hi = e.lower().tolist(), e.upper().tolist()
        for v, low, high in zip(point, lo, hi):
            value = mpmath.exp(mpmath.mpf(v.numerator) / v.denominator)
            assert mpmath.mpf(low) <= value <= mpmath.mpf(high)
    positive = Ball(x.mid.abs() + 2 * x.rad + 1e-3, x.rad)
    r = iv.reciprocal(positive, ledger)
    for _ in range(SAMPLES):
        assert _within(r, [1 / v for v in _sample(positive, rng)])


@settings(max_examples=30, deadline=None)
@given(angles=st.lists(st.floats(-50, 50), min_size=5, max_size=5), widen=RADII)
def test_trig_is_sound(angles, widen):
    mpmath.mp.dps = 60
    t = torch.tensor(angles, dtype=torch.float64)
    for fn in ("cos", "sin"):
        out = iv.trig(t, fn, Ledger(), rad=widen)
        for angle, low, high in zip(angles, out.lower().tolist(), out.upper().tolist()):
            value = getattr(mpmath, fn)(mpmath.mpf(angle))
            assert mpmath.mpf(low) <= value <= mpmath.mpf(high)
            # with no widening the ball is rounding-sized (it bounds the float's error, not more)
            assert widen > 0 or high - low < 1e-14


def test_each_operation_charges_its_flops_to_the_current_step():
    """The ledger is the proof's cost: each operation's count (radius work included), by hand for chosen shapes."""
    x = Ball(torch.ones(2, 3, dtype=torch.float64), torch.full((2, 3), 0.1, dtype=torch.float64))
    y = Ball.exact(torch.full((3, 4), 2.0, dtype=torch.float64))
    cases = [
        (lambda ledger: iv.add(x, x, ledger), 4 * 6),
        (lambda ledger: iv.sub(x, 1.0, ledger), 4 * 6),
        (lambda ledger: iv.mul(x, x, ledger), 9 * 6),
        (lambda ledger: iv.sum_(x, 1, ledger), 3 * 6),
        (lambda ledger: iv.exp(x, ledger), 8 * 6),
        (lambda ledger: iv.reciprocal(x, ledger), 12 * 6),
        (lambda ledger: iv.trig(torch.zeros(5), "cos", ledger), 5),
        # 2 (i k j products) + 2 (|x| and |y|) + the radius term of x: max over k, sum over k of |y|, einsum
        (lambda ledger: iv.einsum("ik,kj->ij", x, y, ledger), 2 * 24 + 2 * 18 + (6 + 12 + 2 * 8) + 12),
        (
            lambda ledger: iv.einsum("ik,kj->ij", y.map(lambda t: t.T), x.map(lambda t: t.T), ledger),
            2 * 24 + 2 * 18 + (6 + 12 + 2 * 8),
        ),
    ]
    for op, flops in cases:
        ledger = Ledger()
        ledger.step = "here"
        op(ledger)
        assert ledger.flops == {"here": flops} and ledger.total == flops


@pytest.mark.parametrize("radius", [0.0, 0.25])
def test_bounds_are_tight(radius):
    """Sound is not enough for a proof that must prove something: exact operands give rounding-sized radii, and
    radii add as the exact worst case does (up to rounding) for add, mul, sum, and einsum with one exact operand."""
    g = torch.Generator().manual_seed(5)
    mid = torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.5
    x, y = Ball(mid, torch.full_like(mid, radius)), Ball.exact(mid.flip(0))
    ledger, tiny = Ledger(), 1e-12
    worst = {  # the exact half-widths of the results' ranges
        "add": iv.add(x, y, ledger).rad - torch.full_like(mid, radius),
        "mul": iv.mul(x, y, ledger).rad - radius * mid.flip(0),
        "sum": iv.sum_(x, 1, ledger).rad - 4 * radius,
        "einsum": iv.einsum("ik,jk->ij", x, y, ledger).rad - radius * mid.flip(0).sum(1)[None, :],
        "exp": iv.exp(x, ledger).rad - torch.exp(mid) * (math.exp(radius) - 1),
    }
    for name, excess in worst.items():
        assert (excess >= -tiny).all() and (excess <= 1e-9).all(), name
    for name, ball in (("lower", x.lower()), ("upper", x.upper())):
        assert ((ball - mid).abs() - radius).abs().max() <= tiny, name
    assert (x.magnitude() - mid - radius).abs().max() <= tiny
    r = iv.reciprocal(x if radius < 0.5 else y, ledger)
    assert (r.rad - (1 / (mid - radius) - 1 / mid)).abs().max() <= 1e-9
    t = iv.trig(torch.tensor([0.3], dtype=torch.float64), "sin", ledger, rad=radius)
    assert abs(t.rad.item() - radius) <= tiny and t.mid.item() == math.sin(0.3) and t.rad.item() > 0


def test_einsum_reads_spaced_specs_and_distinct_sizes():
    """Spaces in the spec are ignored; every index has its own size, so swapped roles or sizes cannot pass."""
    g = torch.Generator().manual_seed(6)
    x = Ball(torch.randn(2, 3, generator=g, dtype=torch.float64), torch.rand(2, 3, generator=g, dtype=torch.float64))
    y = Ball(torch.randn(3, 5, generator=g, dtype=torch.float64), torch.rand(3, 5, generator=g, dtype=torch.float64))
    spaced, plain = iv.einsum("i k , k j -> i j", x, y, Ledger()), iv.einsum("ik,kj->ij", x, y, Ledger())
    assert spaced.same(plain)
    # the radius term: r_x (|y| + r_y) + |x| r_y, each summed index bounded by max times sum (here exact for k)
    rx, ry, ax, ay = x.rad, y.rad, x.mid.abs(), y.mid.abs()
    naive = rx.amax(1, keepdim=True) * (ay + ry).sum(0, keepdim=True) + ax.sum(1, keepdim=True) * ry.amax(
        0, keepdim=True
    )
    assert (plain.rad >= naive * (1 - 1e-12)).all() and (plain.rad <= naive * (1 + 1e-9) + 1e-12).all()


def test_ball_helpers():
    mid = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    x = Ball(mid, torch.arange(6, dtype=torch.float64).reshape(2, 3) / 10)
    assert x.shape == (2, 3)
    assert torch.equal(x[1].mid, mid[1]) and torch.equal(x[1].rad, x.rad[1])
    scalar = Ball(mid, torch.tensor(0.5, dtype=torch.float64))
    assert scalar[0, 1].rad.item() == 0.5 and scalar[0, 1].mid.item() == 1.0
    moved = x.map(lambda t: t.T)
    assert torch.equal(moved.mid, mid.T) and torch.equal(moved.rad, x.rad.T)
    assert scalar.map(lambda t: t.T).rad.ndim == 0
    assert x.same(Ball(mid.clone(), x.rad.clone())) and not x.same(Ball(mid, x.rad + 1e-9))
    assert not x.same(Ball(mid + 1, x.rad)) and scalar.same(Ball(mid, torch.full((2, 3), 0.5, dtype=torch.float64)))
    exact = Ball.exact(torch.tensor([1.5], dtype=torch.float32))
    assert exact.mid.dtype == torch.float64 and exact.rad.item() == 0.0 and exact.rad.dtype == torch.float64
    three = iv.add(1, 2.0, Ledger())
    assert three.mid.item() == 3.0 and three.rad.item() < 1e-15 and three.mid.dtype == torch.float64
    assert iv.gamma(10) == pytest.approx(10 * 2.0**-53, rel=1e-12) and iv.gamma(10) > 10 * 2.0**-53
    assert iv.round_up(torch.tensor(1.0, dtype=torch.float64), 0).item() > 1.0


def test_constants_angles_and_one_dimensional_balls_keep_float64():
    """Plain numbers enter as float64 exact balls (0.1 is not rounded to float32 first); trig computes float32 angles
    in float64 with a float64 radius; indexing a 1-d ball indexes its radius too."""
    total = iv.add(0.1, 0.2, Ledger())
    assert total.mid.item() == 0.1 + 0.2 and total.mid.dtype == torch.float64
    product = iv.mul(Ball.exact(torch.tensor([3.0], dtype=torch.float64)), 0.1, Ledger())
    assert product.mid.item() == 3.0 * 0.1
    angles = torch.tensor([0.3, 1.1], dtype=torch.float32)
    t = iv.trig(angles, "cos", Ledger(), rad=1e-9)
    assert t.mid.dtype == torch.float64 and t.rad.dtype == torch.float64
    assert torch.equal(t.mid, torch.cos(angles.double())) and t.rad.item() > 1e-9
    x = Ball(torch.arange(4, dtype=torch.float64), torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    assert torch.equal(x[1:3].rad, torch.tensor([0.2, 0.3], dtype=torch.float64))


def test_einsum_of_empty_operands_is_an_exact_zero():
    x, y = Ball.exact(torch.zeros(2, 0, dtype=torch.float64)), Ball.exact(torch.zeros(0, 3, dtype=torch.float64))
    out = iv.einsum("ik,kj->ij", x, y, Ledger())
    assert torch.equal(out.mid, torch.zeros(2, 3, dtype=torch.float64)) and out.rad.dtype == torch.float64
    assert (out.rad <= iv.TINY * 2).all()


# Rounding cushions. The tests above sample points, where float64 rounding stays far below its worst case; these
# build the cases where it does not (sums that lose every small term) and hold each cushion to the assumption it
# stands on (library exp / cos / sin within TRANSCENDENTAL_ULPS ulps), computed independently of the module.


def test_einsum_covers_a_sum_that_rounds_away_every_small_term():
    """1 + n u summed left to right in float64 rounds each u away (ties to even), so the float sum can be off by up
    to n u (how far depends on the summation order of the library's kernel): the rounding radius must grow with the
    number k of products summed."""
    n = 1000
    small = torch.full((n,), iv.U, dtype=torch.float64)
    for spec, x, y in (
        ("k,k->", torch.cat([torch.ones(1, dtype=torch.float64), small]), torch.ones(n + 1, dtype=torch.float64)),
        ("ik,k->i", torch.stack([torch.cat([torch.ones(1, dtype=torch.float64), small])] * 2), torch.ones(n + 1)),
    ):
        x, y = x.double(), y.double()
        out = iv.einsum(spec, Ball.exact(x), Ball.exact(y), Ledger())
        exact = sum(Fraction(a) * Fraction(b) for a, b in zip(x.reshape(-1, n + 1)[0].tolist(), y.tolist()))
        for i in range(out.mid.numel()):
            assert _contains(out, [exact], i), spec


def test_sum_radius_of_a_row_is_its_own_rounding():
    """A row of small numbers beside a row of huge ones: each row's radius is the rounding of its own sum (at most
    2 gamma_k sum |x| of that row), never the other row's."""
    x = Ball.exact(torch.tensor([[1e10, -3e10, 2e10, 5e9], [1.0, 0.1, -0.2, 0.3]], dtype=torch.float64))
    out = iv.sum_(x, 1, Ledger())
    for i in range(2):
        row_abs = sum(abs(Fraction(v)) for v in x.mid[i].tolist())
        assert 0 < Fraction(out.rad[i].item()) <= 2 * Fraction(iv.gamma(4)) * row_abs + Fraction(iv.TINY)
        exact = sum(Fraction(v) for v in x.mid[i].tolist())
        assert _contains(out, [exact], i)


def test_transcendental_radii_cover_the_assumed_library_error():
    """exp, cos and sin of exact inputs are assumed within TRANSCENDENTAL_ULPS ulps of the truth: the radius must be
    at least that many ulps of the value (math.ulp), and for exp of a wide ball at least the worst case
    (e + ulps) e^r - e over the ball, computed with 50-digit mpmath."""
    ulps = iv.TRANSCENDENTAL_ULPS
    angles = torch.tensor([0.0, 0.3, 1.0, 2.5, -0.7], dtype=torch.float64)
    for fn in ("cos", "sin"):
        t = iv.trig(angles, fn, Ledger())
        for value in t.mid.tolist():
            assert Fraction(t.rad.item()) >= ulps * Fraction(math.ulp(value)), (fn, value)
        assert t.rad.item() < 1e-14, "no widening asked: a rounding-sized radius"
    mpmath.mp.dps = 50
    for mid in (-3.0, 0.0, 0.7, 1.0, 10.0):
        for radius in (0.0, 1e-9, 0.5, 2.0):
            e = iv.exp(
                Ball(torch.tensor([mid], dtype=torch.float64), torch.tensor(radius, dtype=torch.float64)), Ledger()
            )
            value = e.mid.item()
            worst = (mpmath.mpf(value) + ulps * mpmath.mpf(math.ulp(value))) * mpmath.exp(radius) - value
            assert mpmath.mpf(e.rad.item()) >= worst, (mid, radius)


def test_einsum_of_an_outer_product_has_one_rounding_per_entry():
    """An outer product sums nothing (k = 1): each entry is one rounded product, so its radius is at most a couple
    of roundings of the largest product, however many entries the output has."""
    g = torch.Generator().manual_seed(7)
    x, y = (Ball.exact(torch.randn(n, generator=g, dtype=torch.float64)) for n in (60, 70))
    out = iv.einsum("i,j->ij", x, y, Ledger())
    assert torch.equal(out.mid, torch.outer(x.mid, y.mid))
    assert (out.rad <= 4 * iv.U * x.mid.abs().max() * y.mid.abs().max()).all()


@pytest.mark.parametrize("inexact", ["x", "y"])
def test_einsum_counts_an_index_summed_in_one_operand_only(inexact):
    """sum_ij x[i, j] y[j] with every x[i, j] in [-1/2, 1/2] and y = 1 ranges over [-6, 6] (12 terms): the index i,
    summed in x only, multiplies the radius by its size; the same with the roles of x and y swapped."""
    wide, exact = Ball(torch.zeros(3, 4, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)), torch.ones(4)
    if inexact == "x":
        out = iv.einsum("ij,j->", wide, Ball.exact(exact), Ledger())
    else:
        out = iv.einsum("j,ij->", Ball.exact(exact), wide, Ledger())
    assert 6.0 <= out.rad.item() <= 6.0 * (1 + 1e-12)


def _inflated(radius: Fraction, n_terms: int) -> Fraction:
    """The module's stated rule, in exact rationals: a radius summed from n non-negative rounded terms is inflated by
    (1 + 2 gamma_{n + 4}), plus TINY for underflow."""
    k = n_terms + 4
    gamma = k * Fraction(iv.U) / (1 - k * Fraction(iv.U))
    return radius * (1 + 2 * gamma) + Fraction(iv.TINY)


def _half_ulps_off(value: float, exact: Fraction) -> Fraction:
    return abs(Fraction(value) - exact) / Fraction(math.ulp(value)) * 2


def test_every_cushion_is_the_documented_one():
    """Each operation's radius is its error analysis, no less (a smaller cushion is unsound by that analysis) and no
    more (a proof that must prove something cannot afford slack), checked in exact rationals on operands whose
    radius sums are exact (midpoints 0, radii 1 or 4), so the float result is the rule's value correctly rounded
    (within half an ulp): the terms counted per operation are those of its radius formula (lower / upper /
    magnitude 2, add 3, mul 4, sum_ k + 2, einsum k + 3, exp 4); exp's spread with delta = TRANSCENDENTAL_ULPS ulps
    of 1 on both exp(mid) and the library's expm1 / exp of the radius (the library values taken as they are), and
    trig's radius the widening plus TRANSCENDENTAL_ULPS ulps of 1. A deliberate change of a cushion changes this
    test with the module docstring."""
    ledger, zero = Ledger(), torch.zeros((), dtype=torch.float64)
    one = Ball(zero, torch.tensor(1.0, dtype=torch.float64))
    exact_one = Ball.exact(torch.tensor(1.0, dtype=torch.float64))
    four = Ball(torch.zeros(4, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    ones = Ball.exact(torch.ones(4, dtype=torch.float64))
    cases = {
        "round_up": (iv.round_up(torch.tensor(1.0, dtype=torch.float64), 0).item(), _inflated(Fraction(1), 0)),
        "lower": (-one.lower().item(), _inflated(Fraction(1), 2)),
        "upper": (one.upper().item(), _inflated(Fraction(1), 2)),
        "magnitude": (one.magnitude().item(), _inflated(Fraction(1), 2)),
        "add": (iv.add(one, Ball.exact(zero), ledger).rad.item(), _inflated(Fraction(1), 3)),
        "mul": (iv.mul(one, exact_one, ledger).rad.item(), _inflated(Fraction(1), 4)),
        "sum_": (iv.sum_(four, 0, ledger).rad.item(), _inflated(Fraction(4), 4 + 2)),
        "einsum": (iv.einsum("i,i->", four, ones, ledger).rad.item(), _inflated(Fraction(4), 4 + 3)),
    }
    widen = 0.25
    trig = iv.trig(torch.tensor([0.3], dtype=torch.float64), "cos", ledger, rad=widen)
    cases["trig"] = (trig.rad.item(), Fraction(widen) + iv.TRANSCENDENTAL_ULPS * 2 * Fraction(iv.U))
    for name, (value, rule) in cases.items():
        assert _half_ulps_off(value, rule) <= 1, (name, value, float(rule))
    delta = iv.TRANSCENDENTAL_ULPS * 2 * Fraction(iv.U)
    for mid, radius in ((0.0, 0.0), (0.0, 2.0**-10), (1.0, 0.5)):
        spread = Fraction(math.expm1(radius)) * (1 + delta) + delta * Fraction(math.exp(radius))
        rule = _inflated(Fraction(math.exp(mid)) * spread * (1 + delta), 4)
        ball = Ball(torch.tensor(mid, dtype=torch.float64), torch.tensor(radius, dtype=torch.float64))
        value = iv.exp(ball, ledger).rad.item()
        limit = 1 if mid == 0.0 else 8  # exp(0) = 1 exactly; else the spread's five roundings and exp(mid)'s
        assert _half_ulps_off(value, rule) <= limit, (mid, radius, value, float(rule))


def test_reciprocal_refuses_a_ball_whose_proven_lower_end_is_zero():
    """A ball whose lower() is exactly 0 cannot be proven positive: a clear error, not an infinite radius (a radius
    just below 1 around 1 is found by stepping down one float at a time)."""
    one, radius = torch.tensor(1.0, dtype=torch.float64), 1.0
    while Ball(one, torch.tensor(radius, dtype=torch.float64)).lower().item() != 0.0:
        radius = math.nextafter(radius, 0.0)
        assert radius > 0.99, "no float radius puts lower() at exactly 0 near 1"
    with pytest.raises(ArithmeticError, match="contains 0"):
        iv.reciprocal(Ball(one, torch.tensor(radius, dtype=torch.float64)), Ledger())


# balls (m, r) where the reciprocal's rounding is at its worst: found by a random search (2e4 balls, r up to 1e-3 m,
# random.Random(7)) on which reversing the lower end's cushion (L (1 + 4 u) for L (1 - 4 u)), the first four, or the
# upper end's ((1 / lo)(1 - 4 u) for (1 + 4 u)), the last four, puts 1 / (m - r) outside the ball (by 7 to 2800 u of its radius)
RECIPROCAL_WORST_CASES = [
    (2.527585789610659, 0.001321590263064887),
    (659141.6350748818, 644.5112339611914),
    (0.00010903156976989261, 8.351528032737186e-08),
    (239928225.66828, 204439.53467593683),
    (74140503.54203063, 15788.05695989504),
    (292.3292358691882, 0.2505869283700508),
    (4.184493899592635e-09, 3.997905245241217e-12),
    (0.06963003648182213, 5.0667165458053965e-06),
]


def test_reciprocal_holds_both_ends_where_its_rounding_is_at_its_worst():
    """1 / (m - r) and 1 / (m + r), in exact rationals, lie within rad of mid of reciprocal's ball (the ball itself,
    not its lower() / upper(), which add cushions of their own) for balls where the cushions of its docstring's
    analysis are what keeps the ball above 1 / (m - r)."""
    m, r = (torch.tensor(column, dtype=torch.float64) for column in zip(*RECIPROCAL_WORST_CASES))
    out = iv.reciprocal(Ball(m, r), Ledger())
    for i, (mid, radius) in enumerate(RECIPROCAL_WORST_CASES):
        center, reach = Fraction(out.mid[i].item()), Fraction(out.rad[i].item())
        for end in (1 / (Fraction(mid) - Fraction(radius)), 1 / (Fraction(mid) + Fraction(radius))):
            assert abs(end - center) <= reach, (mid, radius)
