"""The sign-pattern bound of a pizza ReLU model: the quadrature explanation predicts which units fire, the MLP is
linear given that pattern, and the units that fire against the prediction are bounded by convexity.

The quadrature reading (`quadrature.py`) says unit n of key frequency k fires on input (a, b) iff
cos(x' + phi_n) > 0, x' = pi j / p the input's half-angle (j = k (a + b), plus p where cos(pi k (a - b) / p) < 0, mod
2p): for each half-angle the firing units of a frequency are those whose phase lies in a half-circle, a *window*. Let
s_n(a, b) in {0, 1} be that prediction and z_n = P_n[a] + Q_n[b] the unit's true pre-activation. For any s in [0, 1]

    ReLU(z) = s z + r,   r = ReLU(z) - s z >= 0   (r = ReLU(-z) where s = 1, ReLU(z) where s = 0),

so, exactly, logit_c = D_A[a, c] + D_B[b, c] + W(a, b, c) + sum_n U'[c, n] r_n with the **window logits**

    W(a, b, c) = sum_k Y^P_k[j_k, a, c] + Y^Q_k[j_k, b, c],   Y^P_k[j, a, c] = sum_{n of k firing at j} U'[c, n] P_n[a],

and, because every r_n >= 0, the rest moves the margin logit_c* - logit_c by at least
-sum_n (max_c' U'[c', n] - U'[c*, n]) r_n: the **kinks** (r_n > 0 only where the prediction is wrong: the unit sits
near its kink, or its pre-activation is far from one sinusoid). Soundness never depends on the prediction being
right; its accuracy only decides how small the kink term is.

**Cost.** The tables Y are built by sliding the window: Y[0] is one p x p product per unit, and as j steps round
the circle each unit enters and leaves its window once, a rank-one update of p^2 each, so all 2p K tables cost
O(p^2 N) plus their p^3 K entries; the margins read 2K + 2 table entries per (input, output): p^3 (2K + 2); the kink
term reads every (input, unit) pair once: O(p^2 N). With the reading of P, Q, U' (O(p N d)) that is far below brute
force's p^2 N d, but **not linear in the circuit's parameters**: the p^2 N and p^3 K terms grow faster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int

from hooked_bilinear.toy.modadd import interval as iv
from hooked_bilinear.toy.modadd.interval import Ball, Ledger
from hooked_bilinear.toy.modadd.task import ModAddTask

if TYPE_CHECKING:  # quadrature imports this module
    from hooked_bilinear.toy.modadd.quadrature import ReluTables, UnitReading


@dataclass
class WindowBound:
    """Per input (row a * p + b): the proven margin lower bound, its window part and its kink part."""

    margin: Float[torch.Tensor, " p_squared"]  # window_margin - kinks, rounded down
    window_margin: Float[torch.Tensor, " p_squared"]  # a lower bound of min_c (D + W)(c*) - (D + W)(c)
    kinks: Float[torch.Tensor, " p_squared"]  # an upper bound of sum_n (max U'[:, n] - U'[c*, n]) r_n
    sign_errors: float  # the fraction of (input, unit) pairs with r_n > 0 (the prediction wrong)
    firing: Bool[torch.Tensor, "two_p N"]  # the predicted pattern
    logits: Float[torch.Tensor, "p_squared p"]  # D_A + D_B + W, floats within `radius` of the exact reals
    radius: float


def predicted_firing(reading: UnitReading, p: int, ledger: Ledger) -> Bool[torch.Tensor, "two_p N"]:
    """Whether each unit fires at each half-angle x = pi j / p by the reading: cos(x + phi_n) > 0 (a choice: any
    pattern keeps the bound sound).

    Args:
        reading: `quadrature.read_units`'s output.
        p: the modulus.
        ledger: where the flops go.

    Returns:
        [2p, N] booleans.
    """
    j = torch.arange(2 * p, dtype=torch.float64)
    ledger.add(3 * 2 * p * len(reading.phi))
    return torch.cos(math.pi * j[:, None] / p + reading.phi[None, :]) > 0


def half_angle_index(k: int, a: torch.Tensor, b: torch.Tensor, p: int) -> Int[torch.Tensor, " s"]:
    """j with the input's half-angle for frequency k at pi j / p: k (a + b), plus p where cos(pi k (a - b) / p) < 0
    (decided on integers), mod 2p.

    Args:
        k: the frequency.
        a: first operands.
        b: second operands.
        p: the modulus.

    Returns:
        The indices, in 0..2p-1.
    """
    r = (k * (a - b)) % (2 * p)
    flip = (2 * r > p) & (2 * r < 3 * p)
    return (k * (a + b) + p * flip.long()) % (2 * p)


def _firing_at(
    reading: UnitReading,
    firing: Bool[torch.Tensor, "two_p N"],
    a: Int[torch.Tensor, " s"],
    b: Int[torch.Tensor, " s"],
    p: int,
    units: Int[torch.Tensor, " n"],
) -> Bool[torch.Tensor, "s n"]:
    """The predicted firing of `units` on the inputs (a, b): each unit's pattern at its frequency's half-angle."""
    j = torch.stack([half_angle_index(k, a, b, p) for k in reading.frequencies], 1)  # [s, K]
    slot = torch.tensor([reading.frequencies.index(int(k)) for k in reading.frequency[units]], dtype=torch.long)
    return firing[j[:, slot], units[None, :]]


def window_tables(
    X: Ball, U: Ball, firing: Bool[torch.Tensor, "two_p n"], ledger: Ledger
) -> tuple[Float[torch.Tensor, "two_p p p"], float]:
    """Y[j, t, c] = sum_n firing[j, n] X[t, n] U[c, n] for every half-angle j, by sliding the window: Y[0] directly,
    then per j the units entering (+) and leaving (-). Returns the float table and one radius that covers, for every
    entry, the distance to the exact sum over every real in X and U (rounding of the running sums included).

    Args:
        X: [p, n] pre-activations of the units (of one frequency) from one operand.
        U: [p, n] their output columns.
        firing: [2p, n] the predicted pattern.
        ledger: where the flops go.

    Returns:
        (Y [2p, p, p], radius).
    """
    two_p, n = firing.shape
    p = X.shape[0]
    x, u = X.mid, U.mid
    on = firing.double()
    table = torch.empty(two_p, p, u.shape[0], dtype=torch.float64)
    table[0] = (x * on[0]) @ u.T
    steps = on[1:] - on[:-1]  # +1 entering, -1 leaving
    events = int(on[0].sum().item())
    for j in range(1, two_p):
        moved = steps[j - 1].nonzero().flatten()
        events += len(moved)
        table[j] = table[j - 1] + (x[:, moved] * steps[j - 1, moved]) @ u[:, moved].T if len(moved) else table[j - 1]
    ledger.add(2 * p * u.shape[0] * events + p * u.shape[0] * two_p + 2 * two_p * n)
    # every entry is a running sum of `events` signed products, each |x_tn u_cn| <= max_t sum_n |x| * max |u| summed
    # over a unit's appearances (at most events per unit, max over units)
    appearances = (on[0] + steps.abs().sum(0)).amax().item() if n else 0.0
    largest = (x.abs().sum(1).amax() * u.abs().amax()).item() if n else 0.0
    rounding = iv.gamma(n + events + two_p + 4) * appearances * largest
    inputs = 0.0
    if n:
        rx = X.rad.expand_as(x).amax().item()
        ru = U.rad.expand_as(u).amax().item()
        inputs = rx * (u.abs().sum(1).amax().item() + n * ru) + ru * x.abs().sum(1).amax().item()
    ledger.add(4 * p * n + 10)
    return table, float(iv.round_up(torch.tensor(rounding + appearances * inputs), 4).item())


def window_logits(
    tables: ReluTables, reading: UnitReading, task: ModAddTask, firing: Bool[torch.Tensor, "two_p N"], ledger: Ledger
) -> tuple[Float[torch.Tensor, "p_squared p"], float]:
    """D_A[a, c] + D_B[b, c] + W(a, b, c) on every input (row a * p + b) and output, as floats within one radius of
    the exact reals.

    Args:
        tables: `quadrature.read_tables`'s output.
        reading: `quadrature.read_units`'s output.
        task: the task.
        firing: `predicted_firing`'s output.
        ledger: where the flops go.

    Returns:
        (logits [p^2, p], radius).
    """
    p = task.p
    a, b = task.operands()
    logits = (tables.direct_a.mid[a] + tables.direct_b.mid[b]).clone()
    radius = tables.direct_a.rad.amax().item() + tables.direct_b.rad.amax().item()
    magnitude = tables.direct_a.mid.abs().amax().item() + tables.direct_b.mid.abs().amax().item()
    terms = 2
    for k in reading.frequencies:
        units = (reading.frequency == k).nonzero().flatten()
        j = half_angle_index(k, a, b, p)
        for X, operand in ((tables.P, a), (tables.Q, b)):
            table, rad = window_tables(X[:, units], tables.U[:, units], firing[:, units], ledger)
            logits += table.reshape(2 * p * p, -1)[j * p + operand]
            radius += rad
            magnitude += table.abs().amax().item()
            terms += 1
    ledger.add(terms * logits.numel() + 2 * p * p * len(reading.frequencies))
    return logits, float(iv.round_up(torch.tensor(radius + iv.gamma(terms) * magnitude), terms).item())


def kink_bound(
    tables: ReluTables,
    reading: UnitReading,
    task: ModAddTask,
    firing: Bool[torch.Tensor, "two_p N"],
    ledger: Ledger,
    skip: Bool[torch.Tensor, " N"] | None = None,
    chunk: int = 8,
) -> tuple[Float[torch.Tensor, " p_squared"], float, Float[torch.Tensor, " N"]]:
    """Upper bounds of sum_n (max_c U'[c, n] - U'[c*, n]) r_n per input, r_n = ReLU(z_n) - s_n z_n >= 0 (z_n the
    true pre-activation, s_n the predicted firing), over the units not in `skip`; with the fraction of (input, unit)
    pairs where r_n can be > 0 and each unit's total over the inputs (which units cost the bound most).

    Args:
        tables: P, Q and U' (`quadrature.read_tables`).
        reading: the units' frequencies (`quadrature.read_units`).
        task: the task, for p and the answers.
        firing: the predicted pattern (`predicted_firing`).
        ledger: where the flops go.
        skip: units left out of the sum (their kinks summed exactly elsewhere), or None.
        chunk: first operands per batch.

    Returns:
        (kinks [p^2], fraction of pairs with a sign error, per-unit totals [N]).
    """
    p = task.p
    n = tables.P.shape[1]
    top = tables.U.upper().amax(0)  # >= max_c U'[c, n]
    low = tables.U.lower()
    parts, wrong = [], 0
    totals = torch.zeros(n, dtype=torch.float64)
    kept = torch.ones(n, dtype=torch.float64) if skip is None else (~skip).double()
    for start in range(0, p, chunk):
        a_rows = torch.arange(start, min(start + chunk, p))
        a = a_rows.repeat_interleave(p)
        b = torch.arange(p).repeat(len(a_rows))
        z = iv.add(tables.P[a], tables.Q[b], ledger)  # [s, N]
        on = _firing_at(reading, firing, a, b, p, torch.arange(n))  # [s, N]
        rest = torch.where(on, (-z.lower()).clamp_min(0.0), z.upper().clamp_min(0.0))  # >= r_n
        weight = iv.round_up(top[None, :] - low[(a + b) % p], 2).clamp_min(0.0)  # >= max U' - U'[c*]
        terms = weight * rest * kept
        parts.append(iv.round_up(terms.sum(1), n))
        totals += terms.sum(0)
        wrong += int((rest > 0).sum().item())
    ledger.add(14 * p * p * n)
    return torch.cat(parts), wrong / (p * p * n), totals


def window_bound(
    tables: ReluTables, reading: UnitReading, task: ModAddTask, ledger: Ledger, exact_units: int = 0
) -> WindowBound:
    """The sign-pattern bound on every input's margin (module docstring).

    Args:
        tables: `quadrature.read_tables`'s output.
        reading: `quadrature.read_units`'s output.
        task: the task.
        ledger: where the flops go (its step is set here: "sign pattern", "window tables and margins", "kinks").
        exact_units: the units with the largest kink totals whose kinks are summed exactly on every input (2p flops
            per mispredicted pair) instead of bounded by convexity; 0: none.

    Returns:
        The bound and its parts.
    """
    p = task.p
    ledger.step = "sign pattern"
    firing = predicted_firing(reading, p, ledger)
    ledger.step = "window tables and margins"
    logits, radius = window_logits(tables, reading, task, firing, ledger)
    ledger.step = "kinks"
    kinks, sign_errors, totals = kink_bound(tables, reading, task, firing, ledger)
    rows = torch.arange(p * p)
    radii = torch.full((p * p,), radius, dtype=torch.float64)
    corrected = logits
    if exact_units > 0:
        exact = torch.zeros(len(totals), dtype=torch.bool)
        exact[totals.argsort(descending=True)[:exact_units]] = True
        ledger.add(4 * len(totals))
        kinks, _, _ = kink_bound(tables, reading, task, firing, ledger, skip=exact)
        corrected, radii = exact_kinks(tables, reading, task, firing, logits, radius, rows, exact, ledger)
    ledger.step = "window tables and margins"
    window = _margins(corrected, radii, (rows // p + rows % p) % p, ledger)
    margin = window - kinks
    margin = margin - 4 * iv.U * (window.abs() + kinks) - iv.TINY
    ledger.add(8 * p * p)
    return WindowBound(margin, window, kinks, sign_errors, firing, logits, radius)


def _margins(
    logits: Float[torch.Tensor, "s p"],
    radius: Float[torch.Tensor, " s"],
    answer: Int[torch.Tensor, " s"],
    ledger: Ledger,
) -> Float[torch.Tensor, " s"]:
    """min over c != answer of the exact logit differences, from float logits each within `radius` of its real."""
    diff = logits.gather(1, answer[:, None]) - logits
    diff.scatter_(1, answer[:, None], math.inf)
    best = diff.amin(1)
    ledger.add(3 * logits.numel() + 6 * len(best))
    return best - iv.round_up(2 * radius + 2 * iv.U * best.abs(), 2) - iv.TINY


def exact_kinks(
    tables: ReluTables,
    reading: UnitReading,
    task: ModAddTask,
    firing: Bool[torch.Tensor, "two_p N"],
    logits: Float[torch.Tensor, "p_squared p"],
    radius: float,
    rows: Int[torch.Tensor, " s"],
    units: Bool[torch.Tensor, " N"] | None,
    ledger: Ledger,
) -> tuple[Float[torch.Tensor, "s p"], Float[torch.Tensor, " s"]]:
    """The window logits of the inputs `rows` (a * p + b) plus sum_n U'[c, n] r_n over their (input, unit) pairs
    where r_n can be > 0, for the units in `units` (None: all), summed exactly (2p flops per such pair); with each
    row's radius.

    Args:
        tables: `quadrature.read_tables`'s output.
        reading: `quadrature.read_units`'s output.
        task: the task.
        firing: the predicted pattern.
        logits: `window_logits`'s floats over all inputs.
        radius: their radius.
        rows: the inputs.
        units: the units whose kinks are summed, or None for all.
        ledger: where the flops go.

    Returns:
        (logits [s, p], radius [s]).
    """
    p = task.p
    n = tables.P.shape[1]
    chosen = torch.arange(n) if units is None else units.nonzero().flatten()
    a, b = rows // p, rows % p
    z = iv.add(tables.P[:, chosen][a], tables.Q[:, chosen][b], ledger)
    on = _firing_at(reading, firing, a, b, p, chosen)
    x = Ball(torch.where(on, -z.mid, z.mid), z.rad)  # r = ReLU(x): ReLU(-z) where predicted on, ReLU(z) where off
    low, high = x.lower().clamp_min(0.0), x.upper().clamp_min(0.0)
    pair, column = (high > 0).nonzero(as_tuple=True)
    unit = chosen[column]
    r_mid = (low[pair, column] + high[pair, column]) / 2
    r_rad = iv.round_up((high - low)[pair, column] / 2 + iv.U * r_mid, 2)
    u = tables.U.mid[:, unit]  # [p, pairs]
    corrected = logits[rows].index_add(0, pair, (u * r_mid[None, :]).T)
    size = u.abs().amax(0)
    u_rad = tables.U.rad.expand_as(tables.U.mid)[:, unit].amax(0)
    per_pair = size * r_rad + u_rad * (r_mid.abs() + r_rad) + iv.gamma(n + 2) * size * r_mid.abs()
    radii = radius + torch.zeros(len(rows), dtype=torch.float64).index_add(0, pair, per_pair)
    radii = iv.round_up(radii + iv.gamma(n + 2) * logits[rows].abs().amax(1), n)  # the running sums
    ledger.add(12 * len(rows) * len(chosen) + (2 * p + 12) * len(pair) + p * len(rows))
    return corrected, radii


def exact_kink_margins(
    tables: ReluTables,
    reading: UnitReading,
    task: ModAddTask,
    bound: WindowBound,
    rows: Int[torch.Tensor, " s"],
    ledger: Ledger,
) -> Float[torch.Tensor, " s"]:
    """Proven margins of the inputs `rows` (a * p + b) with their kinks made exact: the window logits plus
    sum_n U'[c, n] r_n over the (input, unit) pairs where r_n can be > 0 only (2p flops per such pair, against
    2 p N per input for the exact circuit): the model's logits, so these are the true margins up to rounding.

    Args:
        tables: `quadrature.read_tables`'s output.
        reading: `quadrature.read_units`'s output.
        task: the task.
        bound: `window_bound`'s output.
        rows: the inputs.
        ledger: where the flops go.

    Returns:
        A lower bound of each input's margin.
    """
    p = task.p
    logits, radii = exact_kinks(tables, reading, task, bound.firing, bound.logits, bound.radius, rows, None, ledger)
    return _margins(logits, radii, (rows // p + rows % p) % p, ledger)
