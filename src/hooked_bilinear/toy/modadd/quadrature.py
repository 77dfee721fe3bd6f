"""A ReLU modular-addition MLP read as numerical integration, and a margin bound in time linear in its parameters.

The third paper (Yip, Agrawal, Chan, Gross 2024) reads the ReLU MLP of a one-layer pizza transformer as a quadrature.
Our derivation, for the set-up `toy.modadd` trains with `mlp="relu"` (input "a b", uniform attention, no biases,
vocabulary = the residues):

**The model.** At the last position the residual stream is x(a, b) = A[a] + B[b] with A = (s / 2) OV E and
B = E + (s / 2) OV E (E the residue embeddings, OV = W_O W_V, s the attention residual scale), so hidden unit n sees
P_n[a] + Q_n[b] (P = A W_in^T, Q = B W_in^T) and logit_c = D_A[a, c] + D_B[b, c] + sum_n U'[c, n] h_n(a, b) with
h_n = ReLU(P_n[a] + Q_n[b]), U' = W_U W_out and the direct logits D_A = A W_U^T, D_B = B W_U^T.

**The explanation read from the weights.** Each unit n has one key frequency k (theta = 2 pi k / p) and an input
amplitude and phase with P_n[a] ~ Q_n[a] ~ alpha_n cos(theta a + phi_n); its output column is a constant plus
harmonics of k, U'[c, n] ~ o_n + sum_m gamma_nm cos(m theta c + chi_nm), m = 1..M. Exactly, in the reals, with
d = a - b, s = a + b (integers) and C = cos(theta d / 2),

    alpha cos(theta a + phi) + alpha cos(theta b + phi) = 2 alpha C cos(x + phi),   x = theta s / 2,
    ReLU(2 alpha C cos(x + phi)) = 2 alpha |C| ReLU(cos(x' + phi)),   x' = x (+ pi where C < 0),

so the units of frequency k add 2 |C| Re[e^{i m theta c} J_km(x')] to logit c, with
J_km(x) = sum_n w_nm e^{i chi_nm} ReLU(cos(x + phi_n)) and w_nm = alpha_n gamma_nm. When chi_nm = 2 m phi_n,
e^{2imx} J_km(x) = sum_n w_nm f_m(x + phi_n) with f_m(psi) = ReLU(cos psi) e^{2 i m psi}: **the units' phases phi_n
are the quadrature points and w_nm their widths** of the integral identity

    (1 / 2 pi) int_{-pi}^{pi} ReLU(cos psi) cos(2 m psi + y) d psi = (-1)^{m+1} cos(y) / (pi (4 m^2 - 1)),

which, as the phases fill the circle evenly, turns the units into the pizza term
2 |cos(theta d / 2)| Re[e^{i m theta (c - a - b)} J^_km]: largest at c = a + b for every harmonic m (m = 1 is the
paper's reading; the models trained here write mostly through m = 2..4, `explanation_table`).

**The bound (`certify_relu`).** For input (a, b), answer c* and another c = c* + Delta, the margin is the sum of

1. the integral: sum_km 2 |C_k(d)| Re[(1 - e^{i m theta Delta}) J^_km], J^_km the mean of e^{2imx} J_km(x) over
   the 2p half-angles x = pi j / p the inputs reach: a function of (d, Delta) alone;
2. the quadrature error, at most 2 |C_k(d)| |1 - e^{i m theta Delta}| delta_km(x'), delta_km(x) =
   |e^{2imx} J_km(x) - J^_km| computed at the 2p half-angles (taken at its maximum over x, or at the input's own x';
   the better of the two bounds is kept);
3. the pre-activation error: ReLU is 1-Lipschitz, so |h_n - h~_n| <= |P_n[a] - P~_n[a]| + |Q_n[b] - P~_n[b]|, which
   moves the margin by at most g_n times that, g_n = max_Delta sum_m gamma_nm |1 - e^{i m theta Delta}|: per a plus
   per b;
4. the output error: U' minus its constant and harmonics, R_U, moves it by at most range_c(R_U[:, n]) h_n <=
   range_c(R_U[:, n]) (ReLU(P_n[a]) + ReLU(Q_n[b])): per a plus per b;
5. the direct path: at least -(range_c D_A[a] + range_c D_B[b]).

Reading P, Q and U' costs O(p N d), the explanation and terms 2 to 4 O(p N M), the (d, Delta) grid O(p^2 K M) and the
direct path p^2 d: at the fixed widths of these models that is linear in p (the parameter count) but for the two
small p^2 terms; brute force costs p^2 N d. Every step is interval arithmetic (`interval.py`), so rounding cannot
make the bound wrong; the flops are counted in a `Ledger` as `certify.py` counts them.

This bound is sound but vacuous on the trained models (terms 3 and 4 add each unit's worst-case error, 20 to 50 times
the margins); `certify_relu`'s default is the sign-pattern bound of `windows.py`, which keeps only the explanation's
prediction of which units fire and costs O(p^2 N + p^3 K) more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from beartype import beartype
from jaxtyping import Float, Int

from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.toy.modadd import interval as iv
from hooked_bilinear.toy.modadd.certify import EXACT_STEP, Certificate, margin_lower_bound
from hooked_bilinear.toy.modadd.circuit import FLOAT32_REL
from hooked_bilinear.toy.modadd.fourier import embedding_spectrum, key_frequencies, n_frequencies
from hooked_bilinear.toy.modadd.interval import Ball, Ledger
from hooked_bilinear.toy.modadd.task import ModAddTask
from hooked_bilinear.toy.modadd.train import require_modadd_architecture
from hooked_bilinear.toy.modadd.windows import exact_kink_margins, window_bound

ANGLE_REL = 16 * iv.U  # a float64 angle pi t / p + phi is within this times (|angle| + 1) of the exact one
HARMONICS = 6  # output harmonics m = 1..M read per unit
BOUNDS = ("windows", "quadrature")  # certify_relu's bounds: the sign-pattern bound (windows.py) and terms 1 to 5


@dataclass
class ReluTables:
    """What the logits of a pizza ReLU model are made of (balls containing the exact reals)."""

    P: Ball  # [p, N]  pre-activation from a
    Q: Ball  # [p, N]  pre-activation from b
    U: Ball  # [p, N]  U' = W_U W_out over the residues
    direct_a: Ball  # [p, p]  W_U A[a]
    direct_b: Ball  # [p, p]  W_U B[b]


@dataclass
class UnitReading:
    """Each hidden unit's key frequency, input amplitude and phase, and output constant, amplitudes and phases per
    harmonic, as chosen floats (the explanation's parameters: the proof takes them as exact)."""

    frequency: Int[torch.Tensor, " N"]
    alpha: Float[torch.Tensor, " N"]
    phi: Float[torch.Tensor, " N"]
    gamma: Float[torch.Tensor, "N M"]
    chi: Float[torch.Tensor, "N M"]
    offset: Float[torch.Tensor, " N"]
    frequencies: list[int] = field(default_factory=list)

    @property
    def harmonics(self) -> int:
        return self.gamma.shape[1]


@dataclass
class QuadratureCertificate(Certificate):
    """A `Certificate` of the quadrature proof, with each error term's worst size over the inputs (how far it can move
    a margin), and per (frequency, harmonic) the quadrature's integral J^ and its largest error delta."""

    errors: dict[str, float] = field(default_factory=dict)
    integral: dict[tuple[int, int], complex] = field(default_factory=dict)
    quadrature_error: dict[tuple[int, int], float] = field(default_factory=dict)


def require_pizza_relu(model: BilinearForCausalLM, task: ModAddTask, reader: str) -> None:
    """Refuse what the quadrature reading does not cover: anything but a ReLU model of the pizza set-up ('a b',
    uniform attention with query and key weights at zero, vocabulary = the residues).

    Args:
        model: the model.
        task: its task.
        reader: the caller's name, for the message.

    Raises:
        ValueError: naming what is not covered.
    """
    config = model.config
    require_modadd_architecture(config, reader, relu=True)
    if config.bilinear:
        raise ValueError(f"{reader} reads ReLU models (mlp='relu'); for a bilinear one call toy.modadd.certify.")
    if task.has_equals or not task.uniform_attention or config.vocab_size != task.p:
        raise ValueError(
            f"{reader} reads the pizza set-up (input 'a b', uniform attention, vocabulary = the p residues); "
            f"{task} with vocabulary {config.vocab_size} is not it."
        )
    if model.transformer.blocks[0].attn.qkv.weight[: 2 * config.d_model].any():
        raise ValueError(f"{reader}: this model's query or key weights are not zero, so its attention is not uniform.")


def read_tables(model: BilinearForCausalLM, task: ModAddTask, ledger: Ledger) -> ReluTables:
    """P, Q, U' and the direct logits from the weights, as balls (O(p N d) work, and p^2 d for the direct path).

    Args:
        model: a ReLU pizza model.
        task: its task.
        ledger: where the flops go.

    Returns:
        The tables.

    Raises:
        ValueError: a model `require_pizza_relu` refuses.
    """
    require_pizza_relu(model, task, "read_tables")
    config = model.config
    block = model.transformer.blocks[0]
    d, p = config.d_model, task.p
    W_E = Ball.exact(model.transformer.wte.weight.detach()[:p])
    W_V = Ball.exact(block.attn.qkv.weight.detach()[2 * d :])
    W_O = Ball.exact(block.attn.o.weight.detach())
    W_in = Ball.exact(block.mlp.w.weight.detach())
    W_out = Ball.exact(getattr(block.mlp, config.mlp_down_name).weight.detach())
    W_U = Ball.exact(model.lm_head.weight.detach())
    half = config.attn_residual_scale / 2  # s / n_pos, n_pos = 2; the model's float32 constant lies within the radius
    coef = Ball(torch.tensor(half, dtype=torch.float64), torch.tensor(half * FLOAT32_REL, dtype=torch.float64))
    OV = iv.einsum("oe,ed->od", W_O, W_V, ledger)
    A = iv.mul(iv.einsum("td,od->to", W_E, OV, ledger), coef, ledger)
    B = iv.add(W_E, A, ledger)
    P, Q = (iv.einsum("td,nd->tn", X, W_in, ledger) for X in (A, B))
    U = iv.einsum("vd,dn->vn", W_U, W_out, ledger)
    direct_a, direct_b = (iv.einsum("td,vd->tv", X, W_U, ledger) for X in (A, B))
    return ReluTables(P, Q, U, direct_a, direct_b)


def _cos_sin(p: int, k: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2 pi k t / p over the residues t, [p, ...] (floats, for choosing the explanation)."""
    turns = (torch.arange(p)[:, None] * torch.as_tensor(k).reshape(1, -1)) % p
    angles = 2 * math.pi * turns.double() / p
    return angles.cos(), angles.sin()


def read_units(
    tables: ReluTables, p: int, frequencies: list[int] | None, ledger: Ledger, harmonics: int = HARMONICS
) -> UnitReading:
    """The explanation's parameters: each unit's frequency is the key frequency (default: `key_frequencies` of the
    pre-activations' spectrum) where its pre-activations have the most energy; (alpha, phi) fit the mean of P_n and
    Q_n there, the offset and (gamma, chi) per harmonic fit U'[:, n] (least squares: the harmonics' Fourier columns
    are orthogonal). A choice needs no proof; its flops are counted all the same.

    Args:
        tables: `read_tables`'s output.
        p: the modulus.
        frequencies: the key frequencies, or None for the spectrum's.
        ledger: where the flops go.
        harmonics: output harmonics m = 1..harmonics per unit.

    Returns:
        The reading.

    Raises:
        ValueError: bad frequencies or harmonics.
    """
    P, Q, U = tables.P.mid, tables.Q.mid, tables.U.mid
    n_units = P.shape[1]
    if frequencies is None:
        frequencies = key_frequencies(embedding_spectrum(torch.cat([P, Q], dim=1), p))
        ledger.add(4 * p * p * 2 * n_units)
    bad = [k for k in frequencies if not 1 <= k <= n_frequencies(p)]
    if bad or len(set(frequencies)) != len(frequencies) or not frequencies:
        raise ValueError(
            f"frequencies {list(frequencies)}: pass one or more distinct frequencies in 1..{n_frequencies(p)} (p={p})."
        )
    if not 1 <= harmonics <= n_frequencies(p):
        raise ValueError(f"harmonics={harmonics}: pass a count of output harmonics in 1..{n_frequencies(p)} (p={p}).")
    M = (P + Q) / 2
    cos, sin = _cos_sin(p, torch.tensor(frequencies))  # [p, K]
    fit_cos, fit_sin = (2 / p) * (cos.T @ M), (2 / p) * (sin.T @ M)  # [K, N]: M ~ a cos + b sin
    best = (fit_cos.pow(2) + fit_sin.pow(2)).argmax(0)
    units = torch.arange(n_units)
    a, b = fit_cos[best, units], fit_sin[best, units]
    frequency = torch.tensor(frequencies)[best]
    cos_m, sin_m = _cos_sin(p, frequency[:, None] * torch.arange(1, harmonics + 1)[None, :])  # [p, N * M]
    cos_m, sin_m = cos_m.reshape(p, n_units, harmonics), sin_m.reshape(p, n_units, harmonics)
    u_cos = (2 / p) * torch.einsum("tnm,tn->nm", cos_m, U)
    u_sin = (2 / p) * torch.einsum("tnm,tn->nm", sin_m, U)
    ledger.add(4 * p * n_units * (len(frequencies) + 2 * harmonics + 1) + 20 * n_units * harmonics)
    return UnitReading(
        frequency=frequency,
        alpha=(a * a + b * b).sqrt(),
        phi=torch.atan2(-b, a),  # a cos + b sin = alpha cos(t + phi)
        gamma=(u_cos.pow(2) + u_sin.pow(2)).sqrt(),
        chi=torch.atan2(-u_sin, u_cos),
        offset=U.mean(0),
        frequencies=list(frequencies),
    )


def _trig_ball(turns: torch.Tensor, period: int, shift: torch.Tensor | float, fn: str, ledger: Ledger) -> Ball:
    """cos or sin of 2 pi turns / period + shift for exact integers `turns` and float shifts, as a ball."""
    angles = 2 * math.pi * turns.double() / period + shift
    bound = angles.abs().amax().item() if angles.numel() else 0.0
    return iv.trig(angles, fn, ledger, rad=float(ANGLE_REL * (bound + 1)))


def relu(x: Ball, ledger: Ledger) -> Ball:
    """ReLU of every real in x (monotone: the image of [lower, upper]).

    Args:
        x: a ball.
        ledger: where the flops go.

    Returns:
        A ball containing ReLU of every real in x.
    """
    lo, hi = x.lower().clamp_min(0.0), x.upper().clamp_min(0.0)
    ledger.add(8 * x.mid.numel())
    return Ball((lo + hi) / 2, iv.round_up((hi - lo) / 2 + iv.U * hi, 2))


def _range(x: Ball, dim: int) -> torch.Tensor:
    """An upper bound of max - min along `dim`, for every real in x."""
    return iv.round_up(x.upper().amax(dim) - x.lower().amin(dim), 2)


@dataclass
class QuadratureTerms:
    """The explanation's balls: fitted pre-activations and output columns, and e^{2imx} J_km(x) at x = pi j / p."""

    P_fit: Ball  # [p, N]  alpha_n cos(theta a + phi_n)
    U_fit: Ball  # [p, N]  sum_m gamma_nm cos(m theta c + chi_nm)
    chord: Ball  # [p - 1, N, M]  |1 - e^{i m theta_n Delta}| = 2 |sin(m theta_n Delta / 2)|, Delta = 1..p-1
    J: dict[tuple[int, int], Ball]  # (k, m) -> [2p, 2]: (Re, Im) over j


def quadrature_terms(reading: UnitReading, p: int, ledger: Ledger) -> QuadratureTerms:
    """The fitted tables and the quadrature sums at every half-angle the inputs reach (O(p N M)).

    Args:
        reading: `read_units`'s output.
        p: the modulus.
        ledger: where the flops go.

    Returns:
        The explanation's balls.
    """
    t = torch.arange(p)
    k_n = reading.frequency
    harmonic = torch.arange(1, reading.harmonics + 1)
    P_fit = iv.mul(
        _trig_ball((k_n[None, :] * t[:, None]) % p, p, reading.phi[None, :], "cos", ledger),
        Ball.exact(reading.alpha),
        ledger,
    )
    step = (k_n[:, None] * harmonic[None, :]) % p  # [N, M]: m k_n mod p
    U_terms = iv.mul(
        _trig_ball((t[:, None, None] * step[None]) % p, p, reading.chi[None], "cos", ledger),
        Ball.exact(reading.gamma),
        ledger,
    )
    U_fit = iv.sum_(U_terms, -1, ledger)
    half_turns = (torch.arange(1, p)[:, None, None] * step[None]) % p  # sin(pi m k Delta / p): period 2p in turns
    chord = iv.mul(_trig_ball(half_turns, 2 * p, 0.0, "sin", ledger).map(torch.abs), 2.0, ledger)
    J: dict[tuple[int, int], Ball] = {}
    j = torch.arange(2 * p)
    for k in reading.frequencies:
        units = (k_n == k).nonzero().flatten()
        hidden = relu(_trig_ball(j[:, None], 2 * p, reading.phi[units][None, :], "cos", ledger), ledger)  # [2p, n]
        for m in range(1, reading.harmonics + 1):
            weight = Ball.exact(reading.alpha[units] * reading.gamma[units, m - 1])
            parts = []
            for fn in ("cos", "sin"):  # e^{i (2 m x + chi)}, 2 m x = 2 pi m j / p
                rotor = _trig_ball((m * j[:, None]) % p, p, reading.chi[units, m - 1][None, :], fn, ledger)
                parts.append(iv.einsum("jn,n->j", iv.mul(hidden, rotor, ledger), weight, ledger))
            J[(k, m)] = Ball(
                torch.stack([q.mid for q in parts], -1), torch.stack([q.rad.expand_as(q.mid) for q in parts], -1)
            )
    return QuadratureTerms(P_fit, U_fit, chord, J)


def _quadrature_errors(J: Ball, ledger: Ledger) -> tuple[Float[torch.Tensor, " 2"], Float[torch.Tensor, " two_p"]]:
    """(J^, delta(x)): J^ the mean of e^{2imx} J_km over the half-angles (a chosen float pair) and upper bounds of
    |e^{2imx} J_km(x) - J^| at each."""
    centre = J.mid.mean(0)
    diff = iv.sub(J, Ball.exact(centre[None, :]), ledger).magnitude()
    ledger.add(2 * J.mid.numel() + 4 * diff.numel())
    return centre, iv.round_up(diff.pow(2).sum(-1).sqrt() * (1 + 4 * iv.U), 2)


def _pizza_grid(
    terms: QuadratureTerms, reading: UnitReading, p: int, ledger: Ledger
) -> tuple[Ball, dict[tuple[int, int], Ball], dict[int, Ball]]:
    """Over (d, Delta != 0) [p, p - 1]: the integral part of the margin sum_km 2 |C_k(d)| Re[(1 - e^{i m theta Delta})
    J^_km]; per (k, m) the quadrature error's factor |1 - e^{i m theta Delta}|; per k, 2 |C_k(d)| [p]."""
    d, delta = torch.arange(p), torch.arange(1, p)
    total = Ball.exact(torch.zeros(p, p - 1))
    chords: dict[tuple[int, int], Ball] = {}
    scales: dict[int, Ball] = {}
    for k in reading.frequencies:
        cos_half = _trig_ball((k * d) % (2 * p), 2 * p, 0.0, "cos", ledger)  # cos(pi k d / p) = C_k(d)
        scales[k] = Ball(2 * cos_half.mid.abs(), 2 * cos_half.rad.expand_as(cos_half.mid))
        for m in range(1, reading.harmonics + 1):
            centre = terms.J[(k, m)].mid.mean(0)
            turns = (m * k * delta) % p
            cos_D, sin_D = (_trig_ball(turns, p, 0.0, fn, ledger) for fn in ("cos", "sin"))
            ideal = iv.add(
                iv.mul(iv.sub(1.0, cos_D, ledger), float(centre[0]), ledger),
                iv.mul(sin_D, float(centre[1]), ledger),
                ledger,
            )
            total = iv.add(total, iv.mul(scales[k][:, None], ideal[None, :], ledger), ledger)
            chord = _trig_ball(turns, 2 * p, 0.0, "sin", ledger).map(torch.abs)
            chords[(k, m)] = iv.mul(chord, 2.0, ledger)
    return total, chords, scales


@beartype
def certify_relu(
    model: BilinearForCausalLM,
    task: ModAddTask | None = None,
    frequencies: list[int] | None = None,
    *,
    harmonics: int = HARMONICS,
    fallback: bool = False,
    bound: str = "windows",
    exact_units: int = 0,
) -> QuadratureCertificate:
    """Prove a lower bound on every input's margin of a pizza ReLU model through the quadrature explanation: by
    default the sign-pattern bound of `toy.modadd.windows` (the explanation predicts which units fire; O(p^2 N + p^3 K)
    beyond reading the tables), or with `bound="quadrature"` the module docstring's terms 1 to 5, in time linear in
    the model's parameters at fixed widths (sound, but vacuous on the trained models).

    Args:
        model: a one-layer ReLU model of the pizza set-up (`ModAddTrainConfig(mlp="relu")`, a `PIZZA`-like task).
        task: the task it was trained on (default: the one its config records).
        frequencies: the key frequencies units are read at (default: those of the pre-activations' spectrum).
        harmonics: output harmonics m = 1..harmonics read per unit.
        fallback: prove the inputs the bound leaves open again exactly: with "windows" by making their kinks exact
            (`windows.exact_kink_margins`, 2p per mispredicted (input, unit) pair), with "quadrature" from the exact
            tables (`exact_margins`, p N per input: what brute force costs, less the embedding); `compressed` keeps
            the bound's own margins.
        bound: "windows" (the sign-pattern bound) or "quadrature" (terms 1 to 5).
        exact_units: with "windows", the units whose kinks are summed exactly on every input instead of bounded
            (those with the largest kink totals; 2p flops per mispredicted pair); 0: none.

    Returns:
        The certificate: `margin[a, b]` lower bounds, flops by step, and the error terms' worst sizes.

    Raises:
        ValueError: a bilinear model, another set-up, bad frequencies / harmonics, or an unknown bound.
    """
    if bound not in BOUNDS:
        raise ValueError(f"bound={bound!r}: pass one of {', '.join(map(repr, BOUNDS))}.")
    if exact_units < 0 or (exact_units and bound != "windows"):
        raise ValueError(f"exact_units={exact_units}: pass a count >= 0, and only with bound='windows'.")
    task = task or ModAddTask.from_config(model.config)
    require_pizza_relu(model, task, "certify_relu")
    p = task.p
    ledger = Ledger()
    ledger.step = "read P, Q, U'"
    tables = read_tables(model, task, ledger)
    ledger.step = "explanation (frequencies, phases, amplitudes)"
    reading = read_units(tables, p, frequencies, ledger, harmonics)
    if bound == "windows":
        signs = window_bound(tables, reading, task, ledger, exact_units)
        margin = signs.margin
        errors = {
            "window margin (before kinks), smallest": signs.window_margin.amin().item(),
            "kinks, largest": signs.kinks.amax().item(),
            "kinks, median": signs.kinks.median().item(),
            "sign errors (fraction of input-unit pairs)": signs.sign_errors,
        }
        integral_of: dict[tuple[int, int], complex] = {}
        quadrature_error: dict[tuple[int, int], float] = {}
    else:
        ledger.step = "quadrature"
        terms = quadrature_terms(reading, p, ledger)
        ledger.step = "error bounds"
        per_a, per_b, parts = error_bounds(tables, reading, terms, ledger)
        ledger.step = "margins over (d, Delta)"
        best, integral, by_input, quadrature_error = quadrature_bound(terms, reading, task, ledger)
        a, b = task.operands()
        margin = best - per_a[a] - per_b[b]
        margin = margin - 4 * iv.U * (best.abs() + per_a[a] + per_b[b]) - iv.TINY  # the subtractions rounded
        ledger.add(10 * p * p)
        errors = {
            **{name: (part_a.amax() + part_b.amax()).item() for name, (part_a, part_b) in parts.items()},
            "quadrature, at the input's half-angle": by_input.amax().item(),
            "integral part, smallest over inputs": integral.lower().amin().item(),
        }
        integral_of = {key: complex(*J.mid.mean(0).tolist()) for key, J in terms.J.items()}
    compressed = margin.reshape(p, p)
    margin = compressed.clone()
    if fallback and (compressed <= 0).any():
        ledger.step = EXACT_STEP
        open_a, open_b = (compressed <= 0).nonzero(as_tuple=True)
        exact = (
            exact_kink_margins(tables, reading, task, signs, open_a * p + open_b, ledger)
            if bound == "windows"
            else exact_margins(tables, open_a, open_b, ledger)
        )
        margin[open_a, open_b] = torch.maximum(compressed[open_a, open_b], exact)
    certificate = QuadratureCertificate(
        p,
        list(reading.frequencies),
        margin,
        dict(ledger.flops),
        compressed,
        errors=errors,
        integral=integral_of,
        quadrature_error=quadrature_error,
    )
    return certificate


def error_bounds(
    tables: ReluTables, reading: UnitReading, terms: QuadratureTerms, ledger: Ledger
) -> tuple[Float[torch.Tensor, " p"], Float[torch.Tensor, " p"], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Terms 3 to 5 as (per a, per b): for every input and every c, the model's logit difference logit_c* - logit_c
    lies within per_a[a] + per_b[b] of the explanation's sum_n (U~[c*, n] - U~[c, n]) ReLU(P~_n[a] + P~_n[b]);
    with each term's (per a, per b) parts by name.

    Args:
        tables: `read_tables`'s output.
        reading: `read_units`'s output.
        terms: `quadrature_terms`'s output.
        ledger: where the flops go.

    Returns:
        (per_a [p], per_b [p], {term name: (per a, per b)}).
    """
    # (3) g_n = max_Delta sum_m gamma_nm |1 - e^{i m theta Delta}|, times |P - P~| per a and |Q - P~| per b
    g = iv.einsum("dnm,nm->dn", terms.chord, Ball.exact(reading.gamma), ledger).magnitude().amax(0)
    pre_a, pre_b = (iv.round_up(iv.sub(X, terms.P_fit, ledger).magnitude() @ g, len(g)) for X in (tables.P, tables.Q))
    # (4) range_c R_U[:, n] times ReLU(P_n[a]) + ReLU(Q_n[b]) >= h_n(a, b)
    R_U = iv.sub(iv.sub(tables.U, Ball.exact(reading.offset[None, :]), ledger), terms.U_fit, ledger)
    spread = _range(R_U, 0)
    out_a, out_b = (iv.round_up(X.upper().clamp_min(0.0) @ spread, len(spread)) for X in (tables.P, tables.Q))
    # (5) the direct path
    direct_a, direct_b = _range(tables.direct_a, 1), _range(tables.direct_b, 1)
    ledger.add(6 * tables.P.mid.numel() + 2 * R_U.mid.numel() + 4 * tables.direct_a.mid.numel() + 8 * len(g))
    parts = {
        "pre-activations (Lipschitz), per a + per b": (pre_a, pre_b),
        "output residual R_U, per a + per b": (out_a, out_b),
        "direct path, per a + per b": (direct_a, direct_b),
    }
    return iv.round_up(pre_a + out_a + direct_a, 3), iv.round_up(pre_b + out_b + direct_b, 3), parts


def quadrature_bound(
    terms: QuadratureTerms, reading: UnitReading, task: ModAddTask, ledger: Ledger
) -> tuple[Float[torch.Tensor, " p_squared"], Ball, Float[torch.Tensor, " p_squared"], dict[tuple[int, int], float]]:
    """Terms 1 and 2 for every input (row a * p + b): a lower bound of the explanation's own margin
    min_{c != c*} sum_n (U~[c*, n] - U~[c, n]) ReLU(P~_n[a] + P~_n[b]); with the (d, Delta) integral grid, the
    quadrature error at each input's half-angle and its largest size per (k, m).

    Args:
        terms: `quadrature_terms`'s output.
        reading: `read_units`'s output.
        task: the task.
        ledger: where the flops go.

    Returns:
        (bound [p^2], the integral grid over (d, Delta), the quadrature error per input [p^2], largest delta per (k, m)).
    """
    p = task.p
    integral, chords, scales = _pizza_grid(terms, reading, p, ledger)
    a, b = task.operands()
    d = (a - b) % p
    worst = Ball(integral.mid, integral.rad.expand_as(integral.mid).clone())  # (2) at the largest delta over x
    by_input = torch.zeros(p * p, dtype=torch.float64)  # (2) at the input's own half-angle, bounded over Delta
    quadrature_error: dict[tuple[int, int], float] = {}
    for (k, m), J in terms.J.items():
        _, delta_x = _quadrature_errors(J, ledger)
        quadrature_error[(k, m)] = delta_x.amax().item()
        factor = iv.mul(scales[k][:, None], chords[(k, m)][None, :], ledger).magnitude()  # [d, Delta]
        worst.rad = iv.round_up(worst.rad + factor * delta_x.amax(), 2)
        flip = _negative_cos_half(k, a - b, p)
        x = (k * (a + b) + p * flip.long()) % (2 * p)  # the input's half-angle index j
        by_input = iv.round_up(by_input + factor.amax(1)[d] * delta_x[x], 2)
        ledger.add(3 * factor.numel() + 6 * p * p)
    bound_worst = worst.lower().amin(1)[d]  # [p^2]
    bound_own = integral.lower().amin(1)[d] - by_input
    best = torch.maximum(bound_worst, bound_own - 4 * iv.U * (bound_own.abs() + by_input))
    return best, integral, by_input, quadrature_error


def _negative_cos_half(k: int, d: torch.Tensor, p: int) -> torch.Tensor:
    """cos(pi k d / p) < 0, decided on integers: with r = k d mod 2p, cos(pi r / p) < 0 iff p < 2 r < 3 p."""
    r = (k * d) % (2 * p)
    return (2 * r > p) & (2 * r < 3 * p)


def exact_margins(
    tables: ReluTables, a: Int[torch.Tensor, " s"], b: Int[torch.Tensor, " s"], ledger: Ledger, chunk: int = 512
) -> Float[torch.Tensor, " s"]:
    """Proven margins of the inputs (a[s], b[s]) from the exact tables: D_A[a] + D_B[b] + U' ReLU(P[a] + Q[b]).

    Args:
        tables: `read_tables`'s output.
        a: first operands.
        b: second operands.
        ledger: where the flops go.
        chunk: inputs per batch.

    Returns:
        A lower bound of each input's margin.
    """
    p = tables.U.shape[0]
    parts = []
    for start in range(0, len(a), chunk):
        rows_a, rows_b = a[start : start + chunk], b[start : start + chunk]
        hidden = relu(iv.add(tables.P[rows_a], tables.Q[rows_b], ledger), ledger)
        logits = iv.einsum("sn,cn->sc", hidden, tables.U, ledger)
        logits = iv.add(logits, iv.add(tables.direct_a[rows_a], tables.direct_b[rows_b], ledger), ledger)
        parts.append(margin_lower_bound(logits, None, (rows_a + rows_b) % p, ledger))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


@beartype
def explanation_logits(
    model: BilinearForCausalLM,
    task: ModAddTask | None = None,
    frequencies: list[int] | None = None,
    *,
    harmonics: int = HARMONICS,
) -> dict[str, Float[torch.Tensor, "p p p"]]:
    """The model's logits and the explanation's at each step of the reading, centred over c (a constant over c moves
    no margin), on every input [a, b, c] (plain float64, p^3 N work: for the error table, not the proof).

    Args:
        model: a ReLU pizza model (see `certify_relu`).
        task: its task (default: the one its config records).
        frequencies: key frequencies (default: the pre-activations' spectrum's).
        harmonics: output harmonics per unit.

    Returns:
        "model", "sinusoidal pre-activations" (P, Q -> P~, U' exact), "+ harmonic outputs" (U' -> U~: the quadrature
        sum itself), "integral" (each quadrature sum -> its mean J^: the pizza formula), all with the direct path.

    Raises:
        ValueError: a model or arguments `certify_relu` refuses.
    """
    task = task or ModAddTask.from_config(model.config)
    ledger = Ledger()
    tables = read_tables(model, task, ledger)
    reading = read_units(tables, task.p, frequencies, ledger, harmonics)
    terms = quadrature_terms(reading, task.p, ledger)
    p = task.p
    P, Q, U = tables.P.mid, tables.Q.mid, tables.U.mid
    direct = tables.direct_a.mid[:, None, :] + tables.direct_b.mid[None, :, :]
    fitted = torch.relu(terms.P_fit.mid[:, None, :] + terms.P_fit.mid[None, :, :])
    levels = {
        "model": direct + torch.relu(P[:, None, :] + Q[None, :, :]) @ U.T,
        "sinusoidal pre-activations": direct + fitted @ U.T,
        "+ harmonic outputs": direct + fitted @ terms.U_fit.mid.T,
    }
    a, b = torch.arange(p)[:, None], torch.arange(p)[None, :]
    c = torch.arange(p)
    ideal = direct.clone()
    for k in reading.frequencies:
        scale = 2 * torch.cos(math.pi * k * (a - b).double() / p).abs()  # [a, b]
        for m in range(1, reading.harmonics + 1):
            centre = terms.J[(k, m)].mid.mean(0)
            angle = 2 * math.pi * ((m * k * (c[None, None, :] - a[..., None] - b[..., None])) % p).double() / p
            ideal += scale[..., None] * (centre[0] * angle.cos() - centre[1] * angle.sin())
    levels["integral"] = ideal
    return {name: logits - logits.mean(-1, keepdim=True) for name, logits in levels.items()}


def explanation_table(levels: dict[str, torch.Tensor], task: ModAddTask) -> list[dict[str, float | str]]:
    """Per level of `explanation_logits`: its largest and root-mean-square error against the model's logits (all
    centred), the model's logits' own RMS, and the accuracy of the level's argmax on all p^2 inputs.

    Args:
        levels: `explanation_logits`'s output.
        task: the task (for the answers).

    Returns:
        One row per level.
    """
    truth = levels["model"]
    answers = task.labels().reshape(task.p, task.p)
    rows: list[dict[str, float | str]] = []
    for name, logits in levels.items():
        error = logits - truth
        rows.append(
            {
                "level": name,
                "max |error|": error.abs().max().item(),
                "rms error": error.pow(2).mean().sqrt().item(),
                "rms logit": truth.pow(2).mean().sqrt().item(),
                "accuracy": (logits.argmax(-1) == answers).double().mean().item(),
            }
        )
    return rows
