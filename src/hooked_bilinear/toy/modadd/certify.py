"""A certificate of the modular-addition model's accuracy: a proven lower bound on every input's logit margin.

margin(a, b) = logit_{c*} - max_{c != c*} logit_c with c* = (a + b) mod p. The proof reads the weights only:

1. the circuit (`circuit.py`): attention, and the MLP and unembedding projections of each residual family;
2. the terms that depend on (a, c) or (b, c) only, exactly;
3. each (a, b) interaction tensor T[a, b, c] = sum_n X[a, n] Y[b, n] Z[c, n] compressed: its a and b factors
   projected on the kept frequencies' Fourier columns F_K (X = F_K X^ + R_X, Y = F_K Y^ + R_Y). Everything but the
   product of the two rests is computed exactly in factored form, at a cost set by the kept rank m instead of p
   (`compressed_interaction`); that product, second order in what the frequencies leave out, is bounded per neuron:

       |sum_n R_X[a, n] R_Y[b, n] Z[c, n]| <= sum_n |R_X[a, n]| max_b |R_Y[b, n]| |Z[c, n]|   (or a and b swapped);

   under uniform attention Z is projected too and the main term lives on the residues a + b - c
   (`residue_interaction`), where the bounded part also takes the first-order R_X Y_K Z (X's residual is small);

4. the margins of the kept model minus twice the bound, over all p^2 inputs and p - 1 wrong answers;
5. the inputs whose bound is not positive proven again through the exact circuit (`circuit.circuit_logits`), which
   by itself, for every input, is the uncompressed proof (`certify_exact`).

Everything is computed in interval arithmetic (`interval.py`), so float rounding cannot make the bound wrong; its cost
is every floating-point operation spent, radius work included. The brute-force proof runs the model on all p^2
inputs. With every frequency kept the rest is zero and the bound equals the true margin up to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.toy.modadd import interval as iv
from hooked_bilinear.toy.modadd.circuit import (
    Circuit,
    circuit_logits,
    coef_grid,
    coefficient,
    is_interaction,
    pair_table,
    pairs,
    read_circuit,
)
from hooked_bilinear.toy.modadd.fourier import (
    columns_of,
    fourier_basis,
    frequency_of_column,
    key_frequencies,
    n_frequencies,
)
from hooked_bilinear.toy.modadd.interval import Ball, Ledger
from hooked_bilinear.toy.modadd.task import ModAddTask

EXACT_STEP = "exact circuit"


@dataclass
class Certificate:
    """Proven lower bounds `margin[a, b]` on every input's margin. `compressed` holds the bounds of the compressed
    explanation alone (kept `frequencies` plus the rest bound; None for the uncompressed proof); `margin` adds the
    exact circuit's bounds for the inputs the compression left unproven (`flops[EXACT_STEP]`)."""

    p: int
    frequencies: list[int]
    margin: Float[torch.Tensor, "p p"]
    flops: dict[str, int] = field(default_factory=dict)
    compressed: Float[torch.Tensor, "p p"] | None = None

    @property
    def certified_min_margin(self) -> float:
        return self.margin.min().item()

    @property
    def certified_accuracy(self) -> float:
        """The fraction of inputs proven correct (margin bound > 0)."""
        return (self.margin > 0).double().mean().item()

    @property
    def proof_flops(self) -> int:
        return sum(self.flops.values())

    @property
    def compressed_accuracy(self) -> float:
        """The fraction of inputs the compressed explanation proves correct by itself."""
        return 0.0 if self.compressed is None else (self.compressed > 0).double().mean().item()

    @property
    def compressed_flops(self) -> int:
        """The cost of the compressed proof alone (without the exact fallback)."""
        return self.proof_flops - self.flops.get(EXACT_STEP, 0)


@dataclass
class InteractionFactors:
    """One interaction tensor T[a, b, c] = sum_n X[a, n] Y[b, n] Z[c, n] and its (a, b) coefficient."""

    X: Ball  # [p, N]
    Y: Ball  # [p, N]
    Z: Ball  # [vocab, N]
    coef: Ball  # scalar or [p, p]


def interaction_factors(circuit: Circuit, ledger: Ledger) -> list[InteractionFactors]:
    """Every a-family x b-family pair as factors: X = [W_gate v_a, W_in v_a], Y = [W_in v_b, W_gate v_b], Z = [U', U']."""
    result = []
    for f, g in pairs(circuit):
        if not is_interaction(f, g):
            continue
        fa, fb = (f, g) if f.kind == "a" else (g, f)

        def cat(x, y):
            return Ball(torch.cat([x.mid, y.mid], 1), torch.cat([x.rad.expand_as(x.mid), y.rad.expand_as(y.mid)], 1))

        result.append(
            InteractionFactors(
                cat(fa.gate, fa.linear),
                cat(fb.linear, fb.gate),
                cat(circuit.unembed_out, circuit.unembed_out),
                coefficient(f, g, ledger=ledger),
            )
        )
    return result


def frequency_importance(circuit: Circuit, ledger: Ledger) -> Float[torch.Tensor, " k"]:
    """Weight-only importance of each frequency k to the interaction: sum over pairs and neurons of
    |coef| ||X^_k[:, n]|| ||Y^_k[:, n]|| ||Z^_k[:, n]|| (X^_k: the factor's cos and sin coefficients at k)."""
    p = circuit.task.p
    F = Ball.exact(fourier_basis(p))
    freq = frequency_of_column(p)
    importance = torch.zeros(n_frequencies(p) + 1, dtype=torch.float64)
    for factors in interaction_factors(circuit, ledger):
        norms = []
        for M in (factors.X, factors.Y, factors.Z.map(lambda t: t[:p])):
            hat = iv.einsum("ai,an->in", F, M, ledger).mid
            norms.append(torch.zeros(len(importance), hat.shape[1], dtype=torch.float64).index_add_(0, freq, hat**2))
        importance += factors.coef.magnitude().mean() * (norms[0] * norms[1] * norms[2]).sqrt().sum(1)
    return importance


def factor_spectrum(circuit: Circuit, ledger: Ledger) -> Float[torch.Tensor, " k"]:
    """Energy per frequency of the interactions' a factors X (summed over pairs and neurons): a cheap, weight-only
    choice of the kept frequencies (plain float64: a choice needs no proof; its flops are counted all the same)."""
    p = circuit.task.p
    F = fourier_basis(p)
    energy = torch.zeros(n_frequencies(p) + 1, dtype=torch.float64)
    for factors in interaction_factors(circuit, ledger):
        hat = F.T @ factors.X.mid
        energy.index_add_(0, frequency_of_column(p), hat.pow(2).sum(1))
        ledger.add(2 * p * hat.numel() + 2 * hat.numel())
    return energy


def _basis(p: int, frequencies: list[int]) -> Ball:
    """F_K [p, m]: the Fourier columns of the constant and of the kept frequencies."""
    return Ball.exact(fourier_basis(p)[:, columns_of(p, frequencies)])


def _split(M: Ball, basis: Ball, ledger: Ledger) -> tuple[Ball, Ball]:
    """M = basis M^ + R: (M^ = basis^T M, the rest R = M - basis M^)."""
    hat = iv.einsum("ai,an->in", basis, M, ledger)
    return hat, iv.sub(M, iv.einsum("ai,in->an", basis, hat, ledger), ledger)


def _product_max(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, ledger: Ledger) -> torch.Tensor:
    """An upper bound of sum_n A[x, n] B[n] C[c, n] for non-negative A, B, C: [x, c]. When C has half of A's N = 2 H
    columns it is the hidden units' shared output factor (Z = [U', U']): column n meets C[:, n mod H], and the two
    halves of A B are added before the product with C. Each output sums N' products (N' columns after the fold) of
    rounded factors (A B, one rounding; the fold, one more): rounded up as N' + 2 terms (`interval.round_up`)."""
    AB = A * B
    if C.shape[1] != A.shape[1]:
        AB = AB[:, : C.shape[1]] + AB[:, C.shape[1] :]
        ledger.add(AB.numel())
    ledger.add(2 * AB.shape[0] * AB.shape[1] * C.shape[0] + A.numel())
    return iv.round_up(AB @ C.T, AB.shape[1] + 2)


def _fold(x: Ball, ledger: Ledger) -> Ball:
    """x[..., :H] + x[..., H:]: the two terms of each hidden unit (gate-in and in-gate), added before they meet the
    unit's output column, which they share (Z = [U', U']): half the products."""
    H = x.shape[-1] // 2
    return iv.add(x[..., :H], x[..., H:], ledger)


def _output_columns(factors: InteractionFactors) -> Ball:
    """U' from Z = [U', U'] (each hidden unit's output column, shared by its two terms), checked: the fold needs it."""
    H = factors.Z.shape[1] // 2
    U, again = factors.Z[:, :H], factors.Z[:, H:]
    if not U.same(again):
        raise ValueError("the interaction's output factor Z must be [U', U'] (interaction_factors builds it so).")
    return U


def compressed_interaction(
    factors: InteractionFactors, F_K: Ball, ledger: Ledger
) -> tuple[Ball, Float[torch.Tensor, "p p vocab"]]:
    """(T_K on the (a, b, c) grid, an upper bound of |T - T_K| there) for one interaction tensor.

    With X = F_K X^ + R_X and Y = F_K Y^ + R_Y, T_K holds everything but the product of the two rests, computed
    exactly in factored form (each costs a kept rank m, not p, per input):

        T_K[a, b, c] = sum_ij F_K[a, i] F_K[b, j] C[i, j, c] + sum_j F_K[b, j] M_X[a, j, c] + sum_i F_K[a, i] M_Y[b, i, c]
        C = sum_n X^ Y^ Z,   M_X = sum_n R_X Y^ Z,   M_Y = sum_n X^ R_Y Z,

    and the rest sum_n R_X[a, n] R_Y[b, n] Z[c, n] (second order in what the frequencies leave out) is bounded per
    neuron: <= sum_n |R_X[a, n]| max_b |R_Y[b, n]| |Z[c, n]|, and the same with a and b swapped.
    """
    X_hat, R_X = _split(factors.X, F_K, ledger)
    Y_hat, R_Y = _split(factors.Y, F_K, ledger)
    U = _output_columns(factors)
    core = iv.einsum("ijh,ch->ijc", _fold(iv.einsum("in,jn->ijn", X_hat, Y_hat, ledger), ledger), U, ledger)
    T_K = iv.einsum("ajc,bj->abc", iv.einsum("ijc,ai->ajc", core, F_K, ledger), F_K, ledger)
    M_X = iv.einsum("ajh,ch->ajc", _fold(iv.einsum("an,jn->ajn", R_X, Y_hat, ledger), ledger), U, ledger)
    T_K = iv.add(T_K, iv.einsum("ajc,bj->abc", M_X, F_K, ledger), ledger)
    M_Y = iv.einsum("ibh,ch->ibc", _fold(iv.einsum("in,bn->ibn", X_hat, R_Y, ledger), ledger), U, ledger)
    T_K = iv.add(T_K, iv.einsum("ibc,ai->abc", M_Y, F_K, ledger), ledger)
    r_X, r_Y, u = R_X.magnitude(), R_Y.magnitude(), U.magnitude()  # entrywise magnitude bounds
    ledger.add(2 * (r_X.numel() + r_Y.numel() + u.numel()))
    per_a = _product_max(r_X, r_Y.amax(0), u, ledger)  # [a, c]
    per_b = _product_max(r_Y, r_X.amax(0), u, ledger)  # [b, c]
    ledger.add(per_a.shape[0] * per_b.numel())
    return T_K, torch.minimum(per_a[:, None, :], per_b[None, :, :])


# (i, j, l) entries (0 = cos, 1 = sin) of cos(x + y - z) and sin(x + y - z) in the product basis of a, b and c
SUM_PATTERNS = (
    {(0, 0, 0): 1.0, (1, 1, 0): -1.0, (1, 0, 1): 1.0, (0, 1, 1): 1.0},
    {(1, 0, 0): 1.0, (0, 1, 0): 1.0, (0, 0, 1): -1.0, (1, 1, 1): 1.0},
)


def _fourier_error(p: int) -> float:
    """A bound on |fourier_basis(p) - the exact basis| entrywise: each angle 2 pi k x / p (k x < p^2 / 2) is off by
    at most 4 u of itself, cos / sin add TRANSCENDENTAL_ULPS ulps, and the scale sqrt(2 / p) two more roundings."""
    angle = 2 * math.pi * p * p / 2 / p
    return math.sqrt(2.0 / p) * (4 * iv.U * angle + iv.TRANSCENDENTAL_ULPS * 2 * iv.U) * (1 + 4 * iv.U) + 4 * iv.U


@dataclass
class ResidueTerm:
    """The interaction's main term as a function of the residue s = a + b - c: `g[s]` (balls over s = 0..p-1) with
    its per-frequency amplitudes `alpha` (cos) and `beta` (sin) in the Fourier basis' units."""

    g: Ball  # [p]
    alpha: Ball  # [K]
    beta: Ball  # [K]


def residue_term(core: Ball, frequencies: list[int], p: int, ledger: Ledger) -> tuple[ResidueTerm, Ball]:
    """(the main term over residues, the core's rest). The kept core C (over [const, cos k, sin k, ...] of a, b, c)
    projected on cos(w_k (a + b - c)) and sin(w_k (a + b - c)) per kept frequency k:

        sum_ijl C_main[i, j, l] F[a, i] F[b, j] F[c, l] = (2/p)^(3/2) sum_k alpha_k cos(w_k s) + beta_k sin(w_k s),

    s = a + b - c, with the exact basis; the float basis differs by at most `_fourier_error` per entry, which widens g.
    """
    (m, _, m_c), n_kept = core.shape, len(frequencies)
    flat = core.map(lambda t: t.reshape(-1))
    main_mid = torch.zeros(core.mid.numel(), dtype=torch.float64)
    main_rad = torch.zeros(core.mid.numel(), dtype=torch.float64)
    coefficients = []
    for pattern in SUM_PATTERNS:  # 4 entries per frequency: gathered, not an einsum over the whole core
        index = torch.tensor(
            [
                [((1 + 2 * idx + i) * m + 1 + 2 * idx + j) * m_c + 1 + 2 * idx + k for i, j, k in pattern]
                for idx in range(n_kept)
            ],
            dtype=torch.long,
        ).reshape(n_kept, 4)
        signs = Ball.exact(torch.tensor(list(pattern.values()), dtype=torch.float64))
        entries = flat[index.reshape(-1)].map(lambda t: t.reshape(n_kept, 4))
        coefficient = iv.mul(iv.sum_(iv.mul(entries, signs, ledger), -1, ledger), 0.25, ledger)  # exact / 4
        coefficients.append(coefficient)
        spread = iv.mul(coefficient.map(lambda t: t[:, None]), signs, ledger)  # [K, 4]
        main_mid[index.reshape(-1)] = spread.mid.reshape(-1)
        main_rad[index.reshape(-1)] = spread.rad.expand_as(spread.mid).reshape(-1)
    alpha, beta = coefficients
    main_core = Ball(main_mid.reshape(core.shape), main_rad.reshape(core.shape))
    rest = iv.sub(core, main_core, ledger)
    cos, sin = _residue_trig(frequencies, p, ledger)
    g = iv.add(iv.einsum("k,ks->s", alpha, cos, ledger), iv.einsum("k,ks->s", beta, sin, ledger), ledger)
    g = iv.mul(g, _scale(p), ledger)
    widen = _basis_widening(_main_weight(alpha, beta), p)
    ledger.add(4 * n_kept + 8 + 2 * p)
    return ResidueTerm(Ball(g.mid, iv.round_up(g.rad + widen, 2)), alpha, beta), rest


def _residue_trig(frequencies: list[int], p: int, ledger: Ledger) -> tuple[Ball, Ball]:
    """cos(w_k s) and sin(w_k s) [K, p] for the kept frequencies k and the residues s = 0..p-1, as balls around the
    exact values. The float angle 2 pi (k s mod p) / p is three roundings (math.pi, the product with the integer
    k s mod p < p, the division by p) of a real below 2 pi, so within ((1 + u)^3 - 1) 2 pi (p - 1) / p < 3 u 2 pi of
    the exact angle; cos and sin are 1-Lipschitz, so that is their widening (`interval.trig` adds the library's
    TRANSCENDENTAL_ULPS ulps)."""
    turns = (torch.tensor(frequencies)[:, None] * torch.arange(p)[None, :]) % p  # exact integers
    angles = 2 * math.pi * turns.to(torch.float64) / p
    cos, sin = (iv.trig(angles, fn, ledger, rad=3 * iv.U * 2 * math.pi) for fn in ("cos", "sin"))
    return cos, sin


def _scale(p: int) -> Ball:
    """(2 / p)^(3/2) as a ball: (2 / p) sqrt(2 / p) is three correctly rounded IEEE operations (the division, the
    square root, the product), so within (1 + u)^(7/2) - 1 < 4 u of itself. (A library `**` would be a fourth
    function whose accuracy the proof must assume.)"""
    scale = (2.0 / p) * math.sqrt(2.0 / p)
    return Ball(torch.tensor(scale, dtype=torch.float64), torch.tensor(4 * iv.U * scale, dtype=torch.float64))


def _main_weight(alpha: Ball, beta: Ball) -> torch.Tensor:
    """sum_ijl |C_main[i, j, l]| = 4 (sum_k |alpha_k| + |beta_k|) (each coefficient fills four entries, signs +-1),
    rounded up: a sum of 2 K magnitudes, counted as 2 K + 2 terms by the rule of `interval.round_up`."""
    return iv.round_up(4 * (alpha.magnitude().sum() + beta.magnitude().sum()), 2 * len(alpha.mid) + 2)


def _basis_widening(weight: torch.Tensor, p: int) -> torch.Tensor:
    """How far the main term with the float basis F can lie from g(s) with the exact one: F = F_exact + delta with
    |delta| <= e = `_fourier_error(p)` entrywise and |F_exact| <= sqrt(2 / p), so each product of three entries moves
    by <= 3 e (sqrt(2 / p) + e)^2 (the float sqrt(2 / p), up to 1.5 u below the real one, is covered by the round-up),
    and the main term by that times `weight`."""
    e = _fourier_error(p)
    return iv.round_up(3 * e * (math.sqrt(2.0 / p) + e) ** 2 * weight, 4)


def _project(M: Ball, basis: Ball, ledger: Ledger) -> tuple[Ball, Ball, Ball]:
    """M = basis M^ + R: (M^, the projection basis M^, the rest R)."""
    hat = iv.einsum("ai,an->in", basis, M, ledger)
    kept = iv.einsum("ai,in->an", basis, hat, ledger)
    return hat, kept, iv.sub(M, kept, ledger)


def residue_interaction(
    factors: InteractionFactors,
    frequencies: list[int],
    p: int,
    ledger: Ledger,
    output_frequencies: list[int] | None = None,
    multiply_x_first_order: bool = False,
) -> tuple[ResidueTerm, Ball, Float[torch.Tensor, "p p vocab"]]:
    """One interaction tensor T[a, b, c] = sum_n X[a, n] Y[b, n] Z[c, n] with a scalar coefficient, as
    (main term over residues, the structured rest on the (a, b, c) grid, an upper bound of what is left).

    Each factor is split on the kept frequencies' Fourier columns F_K (Z over the residue classes c < p, on F_K's
    columns followed by those of `output_frequencies`, which make R_Z smaller at p m vocab N more flops):
    X = F_K X^ + R_X, Y = F_K Y^ + R_Y, Z = F_K Z^ + R_Z. Of the eight products,

    - the kept core C = sum_n X^ Y^ Z^ (m^3 numbers): its cos / sin(w_k (a + b - c)) part is the main term g(s),
      evaluated once per residue s (`residue_term`); its rest and the first-order products sum_n X_K R_Y Z_K and
      sum_n X_K Y_K R_Z (m^2 numbers per residue row each) are exact in factored form, at m products per (a, b, c);
    - everything with X's residual, and X_K R_Y R_Z, is bounded per (a, c) or (b, c) without enumerating inputs
      (`residual_product_bound`): sum_n R_X R_Y Z by the lesser of its (a, c) and (b, c) bounds, sum_n R_X Y_K Z
      (Z whole) per (a, c), sum_n X_K R_Y R_Z per (b, c). X's residual is the small one: X is the a token's
      attention output alone, while Y (the b family) carries the residual stream's own embedding too. On modadd-p59
      bounding R_X Y_K Z costs 1.8 units of certified minimum margin (2.21 to 0.41; the true one is 2.74) and saves
      0.022x of brute force (0.135x to 0.113x, still 100%); bounding more first-order products the same way proves less (X_K R_Y Z_K instead of
      R_X Y_K Z_K: 99.9%; both: 70.7%; all three: 0%). `multiply_x_first_order` computes R_X Y_K Z_K exactly too
      (p m^2 H more flops) and bounds only R_X Y_K R_Z: tighter where the bound is what fails (the pizza recipe at
      p = 113: 98.7% at 0.083x bounded, 100% at 0.094x multiplied out).

    Z = [U', U'] repeats each hidden unit's output column for its two terms (gate-in, in-gate), so U' is projected
    once and every product with it adds the two halves first (`_fold`): half the products of a sum over all N.
    """
    vocab = factors.Z.shape[0]
    F = Ball.exact(fourier_basis(p)[:, columns_of(p, frequencies)])
    extra = [k for k in (output_frequencies or []) if k not in frequencies]
    F_out = fourier_basis(p)[:, columns_of(p, frequencies) + columns_of(p, extra)[1:]]  # kept columns first
    F_c = Ball.exact(torch.cat([F_out, torch.zeros(vocab - p, F_out.shape[1], dtype=torch.float64)]))
    U = _output_columns(factors)
    X_hat, X_K, R_X = _project(factors.X, F, ledger)
    Y_hat, Y_K, R_Y = _project(factors.Y, F, ledger)
    U_hat, _, R_U = _project(U, F_c, ledger)
    XY = _fold(iv.einsum("in,jn->ijn", X_hat, Y_hat, ledger), ledger)  # [m, m, H]
    core = iv.einsum("ijh,lh->ijl", XY, U_hat, ledger)
    main, core_rest = residue_term(core, frequencies, p, ledger)
    first_y = iv.einsum("ibh,lh->ibl", _fold(iv.einsum("in,bn->ibn", X_hat, R_Y, ledger), ledger), U_hat, ledger)
    first_z = iv.einsum("ch,ijh->ijc", R_U, XY, ledger)
    by_a = iv.einsum("ai,ijl->ajl", F, core_rest, ledger)
    if multiply_x_first_order:
        first_x = iv.einsum("ajh,lh->ajl", _fold(iv.einsum("an,jn->ajn", R_X, Y_hat, ledger), ledger), U_hat, ledger)
        by_a = iv.add(by_a, first_x, ledger)
    by_a = iv.einsum("ajl,cl->ajc", by_a, F_c, ledger)
    by_a = iv.add(by_a, iv.einsum("ai,ijc->ajc", F, first_z, ledger), ledger)
    structured = iv.einsum("ajc,bj->abc", by_a, F, ledger)
    by_b = iv.einsum("ibl,cl->ibc", first_y, F_c, ledger)
    structured = iv.add(structured, iv.einsum("ibc,ai->abc", by_b, F, ledger), ledger)
    r_X, r_Y, r_U, u = R_X.magnitude(), R_Y.magnitude(), R_U.magnitude(), U.magnitude()  # magnitude bounds
    x_K, y_K = X_K.magnitude(), Y_K.magnitude()
    ledger.add(2 * (r_X.numel() + r_Y.numel() + r_U.numel() + u.numel() + x_K.numel() + y_K.numel()))
    both_a = residual_product_bound(r_X, r_Y, u, ledger)  # [a, c]
    both_b = residual_product_bound(r_Y, r_X, u, ledger)  # [b, c]
    # [a, c]: R_X Y_K R_Z when R_X Y_K Z_K is multiplied out, else all of R_X Y_K Z
    x_rest = residual_product_bound(r_X, y_K, r_U if multiply_x_first_order else u, ledger)
    with_z_b = residual_product_bound(r_Y, x_K, r_U, ledger)  # [b, c]: X_K R_Y R_Z
    bound = torch.minimum(both_a[:, None, :], both_b[None, :, :]) + x_rest[:, None, :] + with_z_b[None, :, :]
    ledger.add(3 * bound.numel())
    return main, structured, iv.round_up(bound, 3)


def residual_product_bound(
    A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, ledger: Ledger
) -> Float[torch.Tensor, "x c"]:
    """An upper bound of |sum_n A[x, n] B[y, n] C[c, n]| over every y, for entrywise magnitude bounds A, B, C of
    three factors (rows x, y, c over neurons n), per neuron: sum_n |A[x, n]| max_y |B[y, n]| |C[c, n]|; C may have
    half of A's columns, the output factor both halves share (`_product_max`). (The lesser of this and Cauchy-Schwarz
    over neurons was tried too: on modadd-p59 it proves 99.25% instead of 97.6% alone, for 0.007x more flops.)"""
    return _product_max(A, B.amax(0), C, ledger)


def residue_grid(main: ResidueTerm, p: int, vocab: int) -> Ball:
    """g(a + b - c mod p) on the (a, b, c) grid [p, p, vocab] (zero for the non-residue classes c >= p)."""
    r = torch.arange(p)
    s = (r[:, None, None] + r[None, :, None] - torch.arange(vocab)[None, None, :]) % p
    inside = torch.arange(vocab)[None, None, :] < p
    rad = main.g.rad.expand_as(main.g.mid)
    return Ball(torch.where(inside, main.g.mid[s], 0.0), torch.where(inside, rad[s], 0.0))


def certify(
    model: BilinearForCausalLM,
    task: ModAddTask | None = None,
    frequencies: list[int] | None = None,
    *,
    fallback: bool = True,
    progress: bool = False,
    output_frequencies: list[int] | None = None,
    multiply_x_first_order: bool = False,
) -> Certificate:
    """Prove a lower bound on every input's margin through the compressed explanation, keeping `frequencies`
    (default: the key frequencies of the interactions' a factors, `factor_spectrum`). With `fallback`,
    the inputs whose compressed bound is not positive are proven again by the exact circuit (`circuit_logits`).
    `output_frequencies`: more frequencies for the output factor Z in the residue proof (uniform attention only);
    `multiply_x_first_order`: R_X Y_K Z_K computed rather than bounded there (`residue_interaction`).

    Args:
        model: a one-layer modular-addition model (`load_model("modadd-p59")`, or one `train_recipe` made).
        task: its task (default: read from its config, `ModAddTask.from_config`).
        frequencies: the kept frequencies (default: the key frequencies of the a factors' spectrum).
        fallback: prove the inputs the compression leaves unproven by the exact circuit.
        progress: a progress bar.
        output_frequencies: more frequencies for the output factor Z (residue proof, uniform attention only).
        multiply_x_first_order: compute R_X Y_K Z_K instead of bounding it (tighter, dearer).

    Returns:
        A `Certificate`: the proven margin bound of every (a, b), the compressed proof's own bounds, and every
        step's flops (`certified_accuracy`, `compressed_accuracy`, `proof_flops`).

    Raises:
        CheckpointFormatError: the model's config has no modular-addition record and no `task` is given.

    Examples:
        >>> import hooked_bilinear as hb
        >>> from hooked_bilinear.toy.modadd import ModAddTask, certify
        >>> model = hb.load_model("modadd-p59")
        >>> certificate = certify(model, ModAddTask.from_config(model.config))
        >>> certificate.certified_accuracy
        1.0
    """
    task = task or ModAddTask.from_config(model.config)
    ledger = Ledger()
    p = task.p
    ledger.step = "circuit"
    circuit = read_circuit(model, task, ledger)
    if frequencies is None:
        ledger.step = "frequency choice"
        frequencies = key_frequencies(factor_spectrum(circuit, ledger))
    for name, chosen in (("frequencies", frequencies), ("output_frequencies", output_frequencies or [])):
        bad = [k for k in chosen if not 1 <= k <= n_frequencies(p)]
        if bad or len(set(chosen)) != len(chosen):
            raise ValueError(
                f"{name} {list(chosen)}: each must appear once and lie in 1..{n_frequencies(p)} "
                f"(p={p}); {bad or 'repeated'} do not."
            )
    vocab = circuit.unembed_out.shape[0]
    logits = Ball.exact(torch.zeros(p, p, vocab))
    rest = torch.zeros(p, p, vocab, dtype=torch.float64)
    ledger.step = "exact (a, c) and (b, c) terms"
    for f in tqdm(circuit.families, desc="direct terms", disable=not progress):
        logits = iv.add(logits, iv.mul(coef_grid(f.coef), f.grid(f.direct), ledger), ledger)
    for f, g in tqdm(pairs(circuit), desc="quadratic terms", disable=not progress):
        if not is_interaction(f, g):
            term = pair_table(f, g, circuit.unembed_out, ledger)
            logits = iv.add(logits, iv.mul(coef_grid(coefficient(f, g, ledger=ledger)), term, ledger), ledger)
    ledger.step = "compressed interaction"
    F_K = _basis(p, frequencies)
    for factors in interaction_factors(circuit, ledger):
        if factors.coef.mid.ndim == 0:  # uniform attention: the main term depends on a + b - c only
            main, structured, bound = residue_interaction(
                factors, frequencies, p, ledger, output_frequencies, multiply_x_first_order
            )
            T_K = iv.add(residue_grid(main, p, vocab), structured, ledger)
        else:
            T_K, bound = compressed_interaction(factors, F_K, ledger)
        coef = coef_grid(factors.coef)
        logits = iv.add(logits, iv.mul(coef, T_K, ledger), ledger)
        rest = iv.round_up(rest + coef.magnitude() * bound, 2)
        ledger.add(2 * rest.numel())
    rest = iv.round_up(rest + circuit.slack, 1)
    ledger.step = "margins"
    compressed = margin_lower_bound(logits, rest, task.labels().reshape(p, p), ledger)
    margin = compressed.clone()
    if fallback and (compressed <= 0).any():
        ledger.step = EXACT_STEP
        a, b = (compressed <= 0).nonzero(as_tuple=True)
        margin[a, b] = torch.maximum(compressed[a, b], exact_margins(circuit, a, b, ledger, progress=progress))
    return Certificate(p, list(frequencies), margin, dict(ledger.flops), compressed)


def certify_exact(model: BilinearForCausalLM, task: ModAddTask | None = None, *, progress: bool = False) -> Certificate:
    """The uncompressed proof: every input's margin bounded through the exact circuit (`circuit_logits`).

    Args:
        model: a one-layer modular-addition model.
        task: its task (default: read from its config, `ModAddTask.from_config`).
        progress: show a progress bar over the input chunks (default False).

    Returns:
        A `Certificate` with `margin` [p, p], no kept frequencies, no `compressed` bounds, and the proof's flops per
        step.
    """
    task = task or ModAddTask.from_config(model.config)
    ledger = Ledger()
    ledger.step = "circuit"
    circuit = read_circuit(model, task, ledger)
    ledger.step = EXACT_STEP
    a, b = task.operands()  # row-major over (a, b)
    margin = exact_margins(circuit, a, b, ledger, progress=progress).reshape(task.p, task.p)
    return Certificate(task.p, [], margin, dict(ledger.flops))


def exact_margins(
    circuit: Circuit,
    a: Int[torch.Tensor, " s"],
    b: Int[torch.Tensor, " s"],
    ledger: Ledger,
    *,
    chunk: int = 2048,
    progress: bool = False,
) -> Float[torch.Tensor, " s"]:
    """Proven margins of the inputs (a[s], b[s]) from the circuit's exact logits, `chunk` inputs at a time."""
    answer = (a + b) % circuit.task.p
    parts = []
    for start in tqdm(range(0, len(a), chunk), desc="exact circuit", disable=not progress):
        rows = slice(start, start + chunk)
        parts.append(margin_lower_bound(circuit_logits(circuit, a[rows], b[rows], ledger), None, answer[rows], ledger))
    return torch.cat(parts)


def margin_lower_bound(
    logits: Ball, rest: Float[torch.Tensor, "... vocab"] | None, answer: Int[torch.Tensor, ...], ledger: Ledger
) -> Float[torch.Tensor, ...]:
    """min over c != answer of lower(logit_answer - logit_c) - rest_answer - rest_c, for every input."""
    index = answer[..., None]
    correct = Ball(logits.mid.gather(-1, index), logits.rad.expand_as(logits.mid).gather(-1, index))
    bound = iv.sub(correct, logits, ledger).lower()
    if rest is not None:
        bound = bound - iv.round_up(rest.gather(-1, index) + rest, 2)
    bound = bound - 2 * iv.U * bound.abs() - iv.TINY  # the subtraction rounded: step down past its error
    bound.scatter_(-1, index, math.inf)
    ledger.add(4 * bound.numel())
    return bound.amin(-1)


def brute_force_flops(model: BilinearForCausalLM, task: ModAddTask) -> int:
    """Floating-point operations to run the model on all p^2 inputs and read every margin: per input, keys and
    values at every position, the last position's query, scores, softmax, mixing, output, MLP, unembedding and the
    margin.

    Args:
        model: a one-layer modular-addition model (its config gives the sizes).
        task: its task (p and the number of positions).

    Returns:
        The flop count, an int (p^2 times the per-input count).
    """
    c = model.config
    d, h, vocab, n = c.d_model, c.d_hidden, c.vocab_size, task.n_pos
    attention = n * 4 * d * d + 2 * d * d + 4 * n * d + 5 * n * c.n_head + 2 * d * d + 2 * d
    mlp = 2 * d * (2 * h if c.bilinear else h) + h + 2 * h * d + d  # a ReLU MLP (toy.modadd mlp="relu"): one map
    return task.p**2 * (attention + mlp + 2 * d * vocab + 2 * vocab)


def certificate_curve(
    model: BilinearForCausalLM, task: ModAddTask | None = None, extra: int = 4, *, progress: bool = True
) -> list[Certificate]:
    """Certificates keeping the 0, 1, 2, ... most important frequencies (weight importance order), up to `extra`
    beyond the key frequencies, and all of them, each with the exact fallback: proof cost against tightness.

    Args:
        model: a one-layer modular-addition model.
        task: its task (default: read from its config, `ModAddTask.from_config`).
        extra: how many frequencies beyond the number of key frequencies to go (default 4).
        progress: show a progress bar over the certificates (default True).

    Returns:
        One `Certificate` per kept count, in increasing count (the last keeps every frequency).
    """
    task = task or ModAddTask.from_config(model.config)
    importance = frequency_importance(read_circuit(model, task, Ledger()), Ledger())
    order = [k for k in torch.argsort(importance, descending=True).tolist() if k > 0]
    counts = sorted(set(range(min(len(key_frequencies(importance)) + extra, len(order)) + 1)) | {len(order)})
    return [certify(model, task, order[:n]) for n in tqdm(counts, desc="certificate curve", disable=not progress)]
