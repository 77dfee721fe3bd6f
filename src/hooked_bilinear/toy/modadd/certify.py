"""A certificate of the modular-addition model's accuracy: a proven lower bound on every input's logit margin.

margin(a, b) = logit_{c*} - max_{c != c*} logit_c with c* = (a + b) mod p. The proof reads the weights only:

1. the circuit (`circuit.py`): attention, and the MLP and unembedding projections of each residual family;
2. the terms that depend on (a, c) or (b, c) only, exactly;
3. each (a, b) interaction tensor T[a, b, c] = sum_n X[a, n] Y[b, n] Z[c, n] compressed: its factors projected on
   the kept frequencies' Fourier columns F_K (X = F_K X^ + R_X, ...), so T = core x F_K x F_K x F_K + rest with the
   core C[i, j, l] = sum_n X^[i, n] Y^[j, n] Z^[l, n], and the rest bounded without ever being formed:

       |T - T_K|[a, b, c] <= sum_n |Z[c, n]| (|R_X[a, n]| max_b |Y[b, n]| + |X_K[a, n]| max_b |R_Y[b, n]|)
                                 + |R_Z[c, n]| |X_K[a, n]| max_b |Y_K[b, n]|   (and the same with a and b swapped);

4. the margins of the kept model minus twice the bound, over all p^2 inputs and p - 1 wrong answers.

Everything is computed in interval arithmetic (`interval.py`), so float rounding cannot make the bound wrong; its cost
is every floating-point operation spent, radius work included. The brute-force proof runs the model on all p^2
inputs. With every frequency kept the rest is zero and the bound equals the true margin up to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.toy.modadd import interval as iv
from hooked_bilinear.toy.modadd.circuit import (
    Circuit,
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


@dataclass
class Certificate:
    """Proven lower bounds `margin[a, b]` on every input's margin, from the kept `frequencies`."""

    p: int
    frequencies: list[int]
    margin: Float[torch.Tensor, "p p"]
    flops: dict[str, int] = field(default_factory=dict)

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


@dataclass
class Factors:
    """One interaction tensor T[a, b, c] = sum_n X[a, n] Y[b, n] Z[c, n] and its (a, b) coefficient."""

    X: Ball  # [p, N]
    Y: Ball  # [p, N]
    Z: Ball  # [vocab, N]
    coef: Ball  # scalar or [p, p]


def interaction_factors(circuit: Circuit, ledger: Ledger) -> list[Factors]:
    """Every a-family x b-family pair as factors: X = [W_gate v_a, W_in v_a], Y = [W_in v_b, W_gate v_b], Z = [U', U']."""
    result = []
    for f, g in pairs(circuit):
        if not is_interaction(f, g):
            continue
        fa, fb = (f, g) if f.kind == "a" else (g, f)
        cat = lambda x, y: Ball(torch.cat([x.mid, y.mid], 1),
                                torch.cat([x.rad.expand_as(x.mid), y.rad.expand_as(y.mid)], 1))
        result.append(Factors(cat(fa.gate, fa.linear), cat(fb.linear, fb.gate),
                              cat(circuit.unembed_out, circuit.unembed_out), coefficient(f, g, ledger=ledger)))
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


def _basis(p: int, vocab: int, frequencies: list[int]) -> tuple[Ball, Ball]:
    """F_K [p, m] for the a and b modes; for the c mode the same plus a unit column for a non-residue token ('=')."""
    F_K = fourier_basis(p)[:, columns_of(p, frequencies)]
    F_c = torch.zeros(vocab, F_K.shape[1] + vocab - p, dtype=torch.float64)
    F_c[:p, : F_K.shape[1]] = F_K
    F_c[p:, F_K.shape[1]:] = torch.eye(vocab - p, dtype=torch.float64)
    return Ball.exact(F_K), Ball.exact(F_c)


def _split(M: Ball, basis: Ball, ledger: Ledger) -> tuple[Ball, Ball, Ball]:
    """M = basis M^ + R: (M^ = basis^T M, the kept part basis M^, the rest R = M - basis M^)."""
    hat = iv.einsum("ai,an->in", basis, M, ledger)
    kept = iv.einsum("ai,in->an", basis, hat, ledger)
    return hat, kept, iv.sub(M, kept, ledger)


def _product_max(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, ledger: Ledger) -> torch.Tensor:
    """An upper bound of sum_n A[x, n] B[n] C[c, n] for non-negative A, B, C: [x, c]."""
    ledger.add(2 * A.shape[0] * A.shape[1] * C.shape[0] + A.numel())
    return iv.round_up((A * B) @ C.T, A.shape[1] + 1)


def compressed_interaction(
    factors: Factors, F_K: Ball, F_c: Ball, ledger: Ledger
) -> tuple[Ball, Float[torch.Tensor, "p p vocab"]]:
    """(T_K on the (a, b, c) grid, an upper bound of |T - T_K| there) for one interaction tensor."""
    X_hat, X_K, R_X = _split(factors.X, F_K, ledger)
    Y_hat, Y_K, R_Y = _split(factors.Y, F_K, ledger)
    Z_hat, _, R_Z = _split(factors.Z, F_c, ledger)
    core = iv.einsum("ijn,ln->ijl", iv.einsum("in,jn->ijn", X_hat, Y_hat, ledger), Z_hat, ledger)
    T_K = iv.einsum("ajl,bj->abl", iv.einsum("ijl,ai->ajl", core, F_K, ledger), F_K, ledger)
    T_K = iv.einsum("abl,cl->abc", T_K, F_c, ledger)
    mag = {name: M.magnitude() for name, M in
           (("X", factors.X), ("Y", factors.Y), ("Z", factors.Z), ("R_X", R_X), ("R_Y", R_Y), ("R_Z", R_Z),
            ("X_K", X_K), ("Y_K", Y_K))}
    ledger.add(2 * sum(m.numel() for m in mag.values()))
    bounds = []
    for first, second in (("X", "Y"), ("Y", "X")):  # max over b, then max over a
        mx = lambda name: mag[name].amax(0)
        bound = (_product_max(mag[f"R_{first}"], mx(second), mag["Z"], ledger)
                 + _product_max(mag[f"{first}_K"], mx(f"R_{second}"), mag["Z"], ledger)
                 + _product_max(mag[f"{first}_K"], mx(f"{second}_K"), mag["R_Z"], ledger))
        bounds.append(iv.round_up(bound, 3))
    ledger.add(2 * bounds[0].numel())
    rest = torch.minimum(bounds[0][:, None, :], bounds[1][None, :, :])  # [a, 1, c] vs [1, b, c]
    return T_K, rest


def certify(
    model: BilinearForCausalLM,
    task: ModAddTask | None = None,
    frequencies: list[int] | None = None,
    *,
    progress: bool = False,
) -> Certificate:
    """Prove a lower bound on every input's margin, keeping `frequencies` (default: the key frequencies by weight
    importance in the interaction, `frequency_importance`)."""
    task = task or ModAddTask.from_config(model.config)
    ledger = Ledger()
    p = task.p
    ledger.step = "circuit"
    circuit = read_circuit(model, task, ledger)
    if frequencies is None:
        ledger.step = "frequency choice"
        frequencies = key_frequencies(frequency_importance(circuit, ledger))
    bad = [k for k in frequencies if not 1 <= k <= n_frequencies(p)]
    if bad or len(set(frequencies)) != len(frequencies):
        raise ValueError(f"frequencies {list(frequencies)}: each must appear once and lie in 1..{n_frequencies(p)} "
                         f"(p={p}); {bad or 'repeated'} do not.")
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
    F_K, F_c = _basis(p, vocab, frequencies)
    for factors in interaction_factors(circuit, ledger):
        T_K, bound = compressed_interaction(factors, F_K, F_c, ledger)
        coef = coef_grid(factors.coef)
        logits = iv.add(logits, iv.mul(coef, T_K, ledger), ledger)
        rest = iv.round_up(rest + coef.magnitude() * bound, 2)
        ledger.add(2 * rest.numel())
    ledger.step = "margins"
    margin = margin_lower_bound(logits, rest, task, ledger)
    return Certificate(p, list(frequencies), margin, dict(ledger.flops))


def margin_lower_bound(
    logits: Ball, rest: Float[torch.Tensor, "p p vocab"], task: ModAddTask, ledger: Ledger
) -> Float[torch.Tensor, "p p"]:
    """min over c != c* of lower(logit_{c*} - logit_c) - rest_{c*} - rest_c, for every (a, b)."""
    p = task.p
    answer = task.labels().reshape(p, p)
    index = answer[:, :, None]
    correct = Ball(logits.mid.gather(2, index), logits.rad.expand_as(logits.mid).gather(2, index))
    difference = iv.sub(correct, logits, ledger).lower()
    bound = difference - iv.round_up(rest.gather(2, index) + rest, 2)
    bound = bound - 2 * iv.U * bound.abs() - iv.TINY  # the subtraction rounded: step down past its error
    bound.scatter_(2, index, math.inf)
    ledger.add(4 * bound.numel())
    return bound.amin(2)


def brute_force_flops(model: BilinearForCausalLM, task: ModAddTask) -> int:
    """Floating-point operations to run the model on all p^2 inputs and read every margin: per input, keys and
    values at every position, the last position's query, scores, softmax, mixing, output, MLP, unembedding and the
    margin."""
    c = model.config
    d, h, vocab, n = c.d_model, c.d_hidden, c.vocab_size, task.n_pos
    attention = n * 4 * d * d + 2 * d * d + 4 * n * d + 5 * n * c.n_head + 2 * d * d + 2 * d
    mlp = 2 * d * 2 * h + h + 2 * h * d + d
    return task.p**2 * (attention + mlp + 2 * d * vocab + 2 * vocab)


def certificate_curve(
    model: BilinearForCausalLM, task: ModAddTask | None = None, extra: int = 4, *, progress: bool = True
) -> list[Certificate]:
    """Certificates keeping the 0, 1, 2, ... most important frequencies (weight importance order), up to `extra`
    beyond the key frequencies, and all of them: proof cost against tightness."""
    task = task or ModAddTask.from_config(model.config)
    importance = frequency_importance(read_circuit(model, task, Ledger()), Ledger())
    order = [k for k in torch.argsort(importance, descending=True).tolist() if k > 0]
    counts = sorted(set(range(min(len(key_frequencies(importance)) + extra, len(order)) + 1)) | {len(order)})
    return [certify(model, task, order[:n]) for n in tqdm(counts, desc="certificate curve", disable=not progress)]
