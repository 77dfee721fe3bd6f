"""Midpoint-radius interval arithmetic in float64 with a flop ledger: the rounding-safe arithmetic of the certificate.

A `Ball(mid, rad)` stands for every real x with |x - mid| <= rad, elementwise. Each operation returns a ball that
contains the exact real result for every choice of reals inside its operands, although it is computed with
float64 rounding to nearest (unit roundoff u = 2^-53):

- a sum or product of floats is off by at most u times its computed magnitude;
- a dot product of length k is off by at most gamma_k |a| . |b| with gamma_k = k u / (1 - k u), in any summation
  order (Higham, "Accuracy and Stability of Numerical Algorithms", 3.1);
- every radius, itself a sum of k non-negative rounded terms, is inflated by (1 + 2 gamma_{k+4}) so it rounds up.

Library exp / cos / sin are assumed accurate to `TRANSCENDENTAL_ULPS` ulps (glibc and SLEEF document <= 1).
Every operation adds its floating-point operations, radius work included, to a `Ledger`: the proof's cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

U = 2.0**-53
TINY = 2.0**-1000  # absorbs underflow in radius terms (far below any radius that matters here)
TRANSCENDENTAL_ULPS = 4


def gamma(k: int) -> float:
    """gamma_k = k u / (1 - k u): the relative error bound of a length-k float64 sum of products."""
    return k * U / (1 - k * U)


def round_up(rad: torch.Tensor, n_terms: int) -> torch.Tensor:
    """A computed radius made an upper bound of its exact value (a sum of `n_terms` non-negative rounded terms)."""
    return rad * (1 + 2 * gamma(n_terms + 4)) + TINY


@dataclass
class Ledger:
    """Floating-point operations spent, by step."""

    flops: dict[str, int] = field(default_factory=dict)
    step: str = "other"

    def add(self, n: int) -> None:
        self.flops[self.step] = self.flops.get(self.step, 0) + int(n)

    @property
    def total(self) -> int:
        return sum(self.flops.values())


@dataclass
class Ball:
    """Reals within `rad` of `mid` (float64 tensors; `rad` broadcasts against `mid`)."""

    mid: torch.Tensor
    rad: torch.Tensor

    @staticmethod
    def exact(values: torch.Tensor) -> Ball:
        """Floats taken as exact reals (e.g. float32 weights, exactly representable in float64)."""
        mid = values.detach().to(torch.float64)
        return Ball(mid, torch.zeros((), dtype=torch.float64))

    @property
    def shape(self) -> torch.Size:
        return self.mid.shape

    def lower(self) -> torch.Tensor:
        """A float that is <= every real in the ball."""
        return self.mid - round_up(self.rad + U * self.mid.abs(), 2)

    def upper(self) -> torch.Tensor:
        """A float that is >= every real in the ball."""
        return self.mid + round_up(self.rad + U * self.mid.abs(), 2)

    def magnitude(self) -> torch.Tensor:
        """A float >= |x| for every real x in the ball."""
        return round_up(self.mid.abs() + self.rad, 2)

    def __getitem__(self, index: Any) -> Ball:
        rad = self.rad if self.rad.ndim == 0 else self.rad.expand_as(self.mid)[index]
        return Ball(self.mid[index], rad)

    def same(self, other: Ball) -> bool:
        """The same midpoints and radii: the same set of reals."""
        return torch.equal(self.mid, other.mid) and torch.equal(
            self.rad.expand_as(self.mid), other.rad.expand_as(other.mid)
        )

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Ball:
        """Apply a pure re-indexing (reshape, permute, index, ...) to midpoint and radius."""
        rad = self.rad if self.rad.ndim == 0 else fn(self.rad.expand_as(self.mid))
        return Ball(fn(self.mid), rad)


Number = Ball | float | int


def _ball(x: Number) -> Ball:
    return x if isinstance(x, Ball) else Ball.exact(torch.tensor(float(x), dtype=torch.float64))


def _n(*tensors: torch.Tensor) -> int:
    return max(t.numel() for t in tensors)


def add(x: Number, y: Number, ledger: Ledger, sign: float = 1.0) -> Ball:
    """x + sign * y (sign is +1 or -1)."""
    x, y = _ball(x), _ball(y)
    mid = x.mid + sign * y.mid
    rad = round_up(x.rad + y.rad + U * mid.abs(), 3)
    ledger.add(4 * _n(mid))
    return Ball(mid, rad)


def sub(x: Number, y: Number, ledger: Ledger) -> Ball:
    return add(x, y, ledger, sign=-1.0)


def mul(x: Number, y: Number, ledger: Ledger) -> Ball:
    """Elementwise x * y."""
    x, y = _ball(x), _ball(y)
    mid = x.mid * y.mid
    rad = round_up(x.mid.abs() * y.rad + x.rad * (y.mid.abs() + y.rad) + U * mid.abs(), 4)
    ledger.add(9 * _n(mid))
    return Ball(mid, rad)


def _reduce(term: str, t: torch.Tensor, letters: str, how: str) -> tuple[str, torch.Tensor]:
    """t with its indices in `letters` reduced away by max or sum (the term's spelling without them)."""
    dims = [i for i, letter in enumerate(term) if letter in letters]
    if not dims:
        return term, t
    if how == "sum" or t.numel() == 0:
        return "".join(letter for letter in term if letter not in letters), t.sum(dims)
    t = t.amax(dims)
    return "".join(letter for letter in term if letter not in letters), t


def _radius_term(spec: str, rad: torch.Tensor, other: torch.Tensor, swap: bool) -> tuple[torch.Tensor, int]:
    """An upper bound of einsum(spec, rad, other) for non-negative tensors, entrywise over the output, without the
    full einsum: sum_n r[.., n] o[.., n] <= max_n r[.., n] sum_n o[.., n] for each summed index n (an index summed
    in one operand only contributes its size or its sum). Returns (bound, flops)."""
    inputs, output = spec.replace(" ", "").split("->")
    terms = inputs.split(",")
    r_term, o_term = (terms[1], terms[0]) if swap else (terms[0], terms[1])
    summed = "".join(sorted({letter for letter in r_term + o_term if letter not in output}))
    r_only = "".join(letter for letter in summed if letter in r_term and letter not in o_term)
    size = math.prod(rad.shape[r_term.index(letter)] for letter in r_only)
    r_term2, r = _reduce(r_term, rad, summed, "max")
    o_term2, o = _reduce(o_term, other, summed, "sum")
    bound = torch.einsum(f"{r_term2},{o_term2}->{output}", r, o) * size
    return bound, rad.numel() + other.numel() + 2 * bound.numel()


def einsum(spec: str, x: Ball, y: Ball, ledger: Ledger) -> Ball:
    """torch.einsum(spec, x, y) for two operands; k = the number of products summed into each output.

    The rounding error of each output is <= gamma_k sum |x||y| <= gamma_k k max|x| max|y|: one number for every
    output, from the operands' largest entries (negligible beside any radius that matters). The operands' radii
    r_x (|y| + r_y) + |x| r_y are carried entrywise over the output, each summed index bounded by the radius' largest
    entry along it times the other operand's sum (`_radius_term`): a proof step costs one float64 einsum."""
    mid = torch.einsum(spec, x.mid, y.mid)
    inputs, output = spec.replace(" ", "").split("->")
    sizes: dict[str, int] = {}
    for term, tensor in zip(inputs.split(","), (x.mid, y.mid)):
        sizes.update(zip(term, tensor.shape))
    k = math.prod(size for letter, size in sizes.items() if letter not in output)
    ax, ay = x.mid.abs(), y.mid.abs()

    def largest(t: torch.Tensor) -> torch.Tensor:
        return t.amax() if t.numel() else torch.zeros((), dtype=torch.float64)

    rad = (gamma(k) * k) * largest(ax) * largest(ay)
    ledger.add(2 * math.prod(sizes.values()) + 2 * (ax.numel() + ay.numel()))
    if x.rad.any():
        extra, flops = _radius_term(spec, x.rad.expand_as(x.mid), ay + y.rad, swap=False)
        rad = rad + extra
        ledger.add(flops + y.mid.numel())
    if y.rad.any():
        extra, flops = _radius_term(spec, y.rad.expand_as(y.mid), ax, swap=True)
        rad = rad + extra
        ledger.add(flops)
    return Ball(mid, round_up(rad, k + 3))


def sum_(x: Ball, dim: int, ledger: Ledger) -> Ball:
    """Sum over one dimension."""
    k = x.mid.shape[dim]
    mid = x.mid.sum(dim)
    rad = x.rad.expand_as(x.mid).sum(dim) + gamma(k) * x.mid.abs().sum(dim)
    ledger.add(3 * x.mid.numel())
    return Ball(mid, round_up(rad, k + 2))


def exp(x: Ball, ledger: Ledger) -> Ball:
    """exp, for every real in x: exp(mid) e^{+-rad}, with exp(mid) known to TRANSCENDENTAL_ULPS ulps."""
    e = torch.exp(x.mid)
    delta = TRANSCENDENTAL_ULPS * 2 * U
    spread = torch.expm1(x.rad.expand_as(e)) * (1 + delta) + delta * torch.exp(x.rad)
    ledger.add(8 * _n(e))
    return Ball(e, round_up(e * spread * (1 + delta), 4))


def reciprocal(x: Ball, ledger: Ledger) -> Ball:
    """1 / x for balls of positive reals; raises if a ball reaches 0 or below.

    Error analysis. Every real y in the ball [m - r, m + r] has 1 / y in [1 / (m + r), 1 / (m - r)], and the floats
    L = x.lower() <= m - r, H = x.upper() >= m + r. Each operation below rounds to nearest (off by <= u of its result):

    - lo = L (1 - 4 u) <= L (1 - 3 u), so 1 / lo >= (1 / L)(1 + 3 u); top = (1 / lo)(1 + 4 u), two roundings, is
      >= (1 / L)(1 + 3 u)(1 - u)^2 (1 + 4 u) >= (1 / L)(1 + 4 u) > 1 / (m - r); in the same way hi = H (1 + 4 u) and
      bottom = (1 / hi)(1 - 4 u) <= (1 / H)(1 - 4 u) < 1 / (m + r): [bottom, top] holds every 1 / y, with 4 u of
      the ends to spare. Either cushion alone would do (1 + 2 u is left); either reversed (L (1 + 4 u), or
      (1 / lo)(1 - 4 u)) does not: on balls found by a random search 1 / (m - r) then lies outside the result, by
      7 to 2800 u of its radius.
    - mid = 1 / m rounded; the radius max(top - mid, mid - bottom) (each subtraction off by <= u of itself) plus
      u |mid|, rounded up as 2 terms (`round_up`; a factor >= (1 - u)^3 (1 + 12 u) >= 1 + 8 u after the roundings)
      is >= top - mid and >= mid - bottom. The u |mid| term only adds slack: the 4 u / L spared at the ends is more
      (1 / L >= 1 / m >= |mid| / (1 + u)).
    """
    lo = x.lower() * (1 - 4 * U)
    if not bool((lo > 0).all()):
        raise ArithmeticError("reciprocal of an interval that contains 0 or negative values.")
    hi = x.upper() * (1 + 4 * U)
    mid = 1.0 / x.mid
    top = (1.0 / lo) * (1 + 4 * U)
    bottom = (1.0 / hi) * (1 - 4 * U)
    rad = torch.maximum(top - mid, mid - bottom)
    ledger.add(12 * _n(mid))
    return Ball(mid, round_up(rad.clamp_min(0.0) + U * mid.abs(), 2))


def trig(angles: torch.Tensor, fn: str, ledger: Ledger, rad: float = 0.0) -> Ball:
    """cos or sin of float64 `angles` taken as exact, as balls; `rad` widens them (e.g. to cover float32 values)."""
    values = getattr(torch, fn)(angles.to(torch.float64))
    ledger.add(values.numel())
    return Ball(values, torch.tensor(rad + TRANSCENDENTAL_ULPS * 2 * U, dtype=torch.float64))
