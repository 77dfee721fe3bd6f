"""Reading the modular-addition model: key frequencies from the weights and from activations, the trig identity each
frequency implements, and the compressed explanation `logit(a, b, c) = sum_k A_k cos(w_k (a + b - c) - phi_k)`.

From the weights: the interaction tensor T[a, b, c] (the part of logit c that depends on a and b jointly; see
`circuit.py`) in the Fourier basis, T^[i, j, l] = sum_n X^[i, n] Y^[j, n] Z^[l, n]. For frequency k its 2x2x2 block
over (cos, sin) of a, b, c is compared with the two patterns of cos(w (a + b - c)) and sin(w (a + b - c)):

    cos(x + y - z) = cx cy cz - sx sy cz + sx cy sz + cx sy sz.

The quadratic form of one output class c (over cos w a, sin w a, cos w b, sin w b) then has eigenvalues +-lambda,
+-lambda: cos(x + y) = [(cx + cy)^2 - (cx - cy)^2 - (sx + sy)^2 + (sx - sy)^2] / 4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float

from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.toy.modadd.certify import interaction_factors
from hooked_bilinear.toy.modadd.circuit import read_circuit
from hooked_bilinear.toy.modadd.fourier import (
    embedding_spectrum,
    fourier_basis,
    key_frequencies,
    n_frequencies,
    sum_pattern_spectrum,
)
from hooked_bilinear.toy.modadd.interval import Ledger
from hooked_bilinear.toy.modadd.task import ModAddTask

# (i, j, l) entries (0 = cos, 1 = sin) of cos(w (a + b - c)) and sin(w (a + b - c)) in the product basis
COS_PATTERN = {(0, 0, 0): 1.0, (1, 1, 0): -1.0, (1, 0, 1): 1.0, (0, 1, 1): 1.0}
SIN_PATTERN = {(1, 0, 0): 1.0, (0, 1, 0): 1.0, (0, 0, 1): -1.0, (1, 1, 1): 1.0}


@dataclass
class FrequencyTerm:
    """One frequency of the explanation: A cos(w_k (a + b - c) - phi), with how well its block fits the identity
    (`identity_fraction` of the block's energy) and the eigenvalues of class 0's quadratic form on its inputs."""

    k: int
    amplitude: float
    phase: float
    identity_fraction: float
    eigenvalues: list[float]


@dataclass
class Explanation:
    """The compressed explanation: `terms` (3 numbers each: k, A_k, phi_k)."""

    p: int
    terms: list[FrequencyTerm]

    @property
    def parameter_count(self) -> int:
        return 3 * len(self.terms)

    def logits(self) -> Float[torch.Tensor, "p p p"]:
        """sum_k A_k cos(w_k (a + b - c) - phi_k) for every (a, b, c)."""
        r = torch.arange(self.p, dtype=torch.float64)
        s = r[:, None, None] + r[None, :, None] - r[None, None, :]
        table = torch.zeros(self.p, self.p, self.p, dtype=torch.float64)
        for t in self.terms:
            table += t.amplitude * torch.cos(2 * math.pi * t.k * s / self.p - t.phase)
        return table


@dataclass
class WeightReading:
    """Frequency content read from the weights: spectra indexed by k = 0..(p-1)/2, and the Fourier-basis core."""

    embedding: Float[torch.Tensor, " k"]
    interaction: Float[torch.Tensor, " k"]
    core: Float[torch.Tensor, "p p vocab_columns"]  # T^ over (a, b, c) Fourier columns (c: residues only)

    @property
    def key_frequencies(self) -> list[int]:
        return key_frequencies(self.interaction)


def interaction_core(model: BilinearForCausalLM, task: ModAddTask) -> Float[torch.Tensor, "p p p"]:
    """T^[i, j, l]: the (a, b) interaction in the Fourier basis of a, b and c, summed over attention families with
    their mean coefficient (exact under uniform attention)."""
    circuit = read_circuit(model, task, Ledger())
    F = fourier_basis(task.p)
    core = torch.zeros(task.p, task.p, task.p, dtype=torch.float64)
    for factors in interaction_factors(circuit, Ledger()):
        X, Y, Z = F.T @ factors.X.mid, F.T @ factors.Y.mid, F.T @ factors.Z.mid[: task.p]
        core += factors.coef.mid.mean() * torch.einsum("ijn,ln->ijl", X[:, None] * Y[None], Z)
    return core


def weight_reading(model: BilinearForCausalLM, task: ModAddTask | None = None) -> WeightReading:
    """Embedding spectrum and interaction spectrum (energy of the core on diagonal blocks k = k' = k'').

    Args:
        model: a one-layer modular-addition model.
        task: its task (default: read from its config, `ModAddTask.from_config`).

    Returns:
        A `WeightReading`: the embedding spectrum and the interaction spectrum, each [(p-1)/2 + 1] (fractions of the
        energy per frequency k = 0..(p-1)/2), and the Fourier-basis core [p, p, p] over (a, b, c).
    """
    task = task or ModAddTask.from_config(model.config)
    core = interaction_core(model, task)
    K = n_frequencies(task.p)
    freq = torch.tensor([0] + [k for k in range(1, K + 1) for _ in (0, 1)])
    same = (freq[:, None, None] == freq[None, :, None]) & (freq[None, :, None] == freq[None, None, :])
    energy = torch.zeros(K + 1, dtype=torch.float64)
    energy.index_add_(0, freq[:, None, None].expand_as(core)[same], core.pow(2)[same])
    spectrum = energy / core.pow(2).sum()
    return WeightReading(embedding_spectrum(model.transformer.wte.weight.detach(), task.p), spectrum, core)


def frequency_term(core: Float[torch.Tensor, "p p p"], p: int, k: int) -> FrequencyTerm:
    """Fit A cos(w_k (a + b - c) - phi) to the core's (k, k, k) block; eigenvalues of class 0's form on it."""
    cols = [2 * k - 1, 2 * k]
    block = core[cols][:, cols][:, :, cols]
    alpha = torch.as_tensor(sum(v * block[idx] for idx, v in COS_PATTERN.items())) / 4
    beta = torch.as_tensor(sum(v * block[idx] for idx, v in SIN_PATTERN.items())) / 4
    scale = (2.0 / p) ** 1.5
    fraction = (4 * (alpha**2 + beta**2) / block.pow(2).sum()).item()
    M = block[:, :, 0] * math.sqrt(2.0 / p)  # class c = 0: cos(0) = 1, sin(0) = 0
    Q = torch.zeros(4, 4, dtype=torch.float64)
    Q[:2, 2:], Q[2:, :2] = M / 2, M.T / 2
    return FrequencyTerm(
        k,
        (scale * torch.hypot(alpha, beta)).item(),
        torch.atan2(beta, alpha).item(),
        fraction,
        torch.linalg.eigvalsh(Q).tolist(),
    )


def explain(
    model: BilinearForCausalLM, task: ModAddTask | None = None, frequencies: list[int] | None = None
) -> Explanation:
    """The compressed explanation over `frequencies` (default: the weights' key frequencies), fitted from weights.

    Args:
        model: a one-layer modular-addition model.
        task: its task (default: read from its config, `ModAddTask.from_config`).
        frequencies: the frequencies to keep (default: the key frequencies of the weights' interaction spectrum,
            `weight_reading(model, task).key_frequencies`).

    Returns:
        An `Explanation`: one term (k, A_k, phi_k) per kept frequency, in the given order.
    """
    task = task or ModAddTask.from_config(model.config)
    reading = weight_reading(model, task)
    frequencies = frequencies if frequencies is not None else reading.key_frequencies
    return Explanation(task.p, [frequency_term(reading.core, task.p, k) for k in frequencies])


def logit_table_fraction(logits: Float[torch.Tensor, "p p vocab"], frequencies: list[int]) -> float:
    """Fraction of the logit table's variance over the answer c (per input, residue classes only) that lies in
    span{cos(w_k (a + b - c)), sin(w_k (a + b - c)) : k in frequencies}.

    Args:
        logits: the answer logits on all inputs [p, p, vocab] (e.g. `all_logits`); only the first p (residue) columns
            are used.
        frequencies: the frequencies k whose cos / sin patterns span the subspace.

    Returns:
        The fraction of the (per-input centred) logit variance in that span, a float in [0, 1].
    """
    p = logits.shape[0]
    L = logits[..., :p].double()
    L = L - L.mean(-1, keepdim=True)
    r = torch.arange(p)
    s = (r[:, None, None] + r[None, :, None] - r[None, None, :]) % p
    F = fourier_basis(p)
    cols = [c for k in frequencies for c in (2 * k - 1, 2 * k)]
    patterns = F[s][..., cols] / p  # each pattern has norm sqrt(p^3) * sqrt(2/p) / ... : normalised below
    patterns = patterns / patterns.pow(2).sum((0, 1, 2), keepdim=True).sqrt()
    coefficients = torch.einsum("abci,abc->i", patterns, L)
    return (coefficients.pow(2).sum() / L.pow(2).sum()).item()


def activation_spectra(
    hidden: Float[torch.Tensor, "p p d_hidden"], logits: Float[torch.Tensor, "p p vocab"]
) -> dict[str, Float[torch.Tensor, " k"]]:
    """Spectra from activations on all p^2 inputs: the MLP's hidden units and the logits as functions of a + b.

    Args:
        hidden: the MLP's hidden activations on every input (a, b) [p, p, d_hidden].
        logits: the answer logits on every input [p, p, vocab]; only the first p (residue) columns are used.

    Returns:
        {"hidden": spectrum, "logits": spectrum}, each [(p-1)/2 + 1]: per frequency k = 0..(p-1)/2, the fraction of
        the (mean-removed) table's energy carried by cos(w_k (a+b)) and sin(w_k (a+b)).
    """
    return {"hidden": sum_pattern_spectrum(hidden), "logits": sum_pattern_spectrum(logits[..., : logits.shape[0]])}
