"""The Fourier basis of Z_p and the frequency content of the modular-addition model, from weights and from activations.

The real orthonormal Fourier basis F [p, p] has columns 1/sqrt(p) (frequency 0), then sqrt(2/p) cos(w_k x) and
sqrt(2/p) sin(w_k x) for k = 1..(p-1)/2, with w_k = 2 pi k / p. The ideal mechanism: for key frequencies k,

    logit(a, b, c) = sum_k A_k cos(w_k (a + b - c) - phi_k),

which a bilinear layer computes exactly through cos(x) cos(y) - sin(x) sin(y) = cos(x + y) and
cos(x + y) cos(z) + sin(x + y) sin(z) = cos(x + y - z): a sum of products of three Fourier factors.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int


def n_frequencies(p: int) -> int:
    """The number of non-zero frequencies, (p - 1) // 2."""
    return (p - 1) // 2


def fourier_basis(p: int, dtype: torch.dtype = torch.float64) -> Float[torch.Tensor, "p p"]:
    """Orthonormal real Fourier basis, columns [const, cos w_1, sin w_1, cos w_2, sin w_2, ...] (p odd).

    Args:
        p: the modulus (odd; a prime, as usual).
        dtype: the dtype of the result (default float64; computed in float64).

    Returns:
        F [p, p], orthonormal columns: 1/sqrt(p), then sqrt(2/p) cos(w_k x), sqrt(2/p) sin(w_k x) for k = 1..(p-1)/2.

    Raises:
        ValueError: p is even.
    """
    if p % 2 == 0:
        raise ValueError(f"p={p} is even; the cos/sin basis used here needs an odd modulus (a prime, as usual).")
    x = torch.arange(p, dtype=torch.float64)
    columns = [torch.full((p,), 1.0 / math.sqrt(p), dtype=torch.float64)]
    for k in range(1, n_frequencies(p) + 1):
        angle = 2 * math.pi * k * x / p
        columns += [math.sqrt(2.0 / p) * torch.cos(angle), math.sqrt(2.0 / p) * torch.sin(angle)]
    return torch.stack(columns, dim=1).to(dtype)


def frequency_of_column(p: int) -> Int[torch.Tensor, " p"]:
    """The frequency k of each basis column: [0, 1, 1, 2, 2, ...]."""
    return torch.tensor([0] + [k for k in range(1, n_frequencies(p) + 1) for _ in (0, 1)])


def columns_of(p: int, frequencies: list[int]) -> list[int]:
    """Basis columns of the constant and of the given frequencies, in order."""
    return [0] + [c for k in frequencies for c in (2 * k - 1, 2 * k)]


def frequency_energy(coefficients: Float[torch.Tensor, "p ..."]) -> Float[torch.Tensor, " k"]:
    """Energy per frequency k = 0..(p-1)/2 of Fourier coefficients along dim 0 (cos^2 + sin^2, summed over the rest)."""
    p = coefficients.shape[0]
    squares = coefficients.double().pow(2).flatten(1).sum(1)
    energy = torch.zeros(n_frequencies(p) + 1, dtype=torch.float64)
    return energy.index_add_(0, frequency_of_column(p), squares)


def embedding_spectrum(W_E: Float[torch.Tensor, "vocab d_model"], p: int) -> Float[torch.Tensor, " k"]:
    """Fraction of the embedding's (residue rows 0..p-1) energy at each frequency: ||F_k^T W_E||^2 / ||W_E||^2."""
    energy = frequency_energy(fourier_basis(p).T @ W_E[:p].double())
    return energy / energy.sum()


def sum_pattern_spectrum(table: Float[torch.Tensor, "p p ..."]) -> Float[torch.Tensor, " k"]:
    """Fraction of the energy of a table over (a, b) carried by cos(w_k (a+b)) and sin(w_k (a+b)), per frequency.

    Used on activations: the MLP's hidden units and the logits of an adding network vary with a + b.
    """
    p = table.shape[0]
    flat = table.double().reshape(p, p, -1)
    flat = flat - flat.mean(dim=(0, 1), keepdim=True)
    total = flat.pow(2).sum()
    s = (torch.arange(p)[:, None] + torch.arange(p)[None, :]) % p
    patterns = fourier_basis(p)[s]  # [a, b, column]: basis column evaluated at a + b, each of norm sqrt(p)
    projection = torch.einsum("abi,abn->in", patterns, flat) / p
    return frequency_energy(projection) * p / total


def key_frequencies(spectrum: Float[torch.Tensor, " k"], threshold: float = 0.05) -> list[int]:
    """Non-zero frequencies holding at least `threshold` of the largest one's share, strongest first.

    Args:
        spectrum: energy (or energy fraction) per frequency k = 0..(p-1)/2, e.g. `WeightReading.interaction`; entry 0
            (the constant) is never a key frequency.
        threshold: the share of the largest non-zero frequency's value a frequency needs (default 0.05).

    Returns:
        The key frequencies k >= 1, strongest first.
    """
    values = spectrum.clone()
    values[0] = 0.0
    order = torch.argsort(values, descending=True).tolist()
    return [k for k in order if k > 0 and values[k] >= threshold * values.max()]
