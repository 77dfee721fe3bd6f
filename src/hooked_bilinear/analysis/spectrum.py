"""Spectrum statistics of interaction matrices and similarity of eigenvectors."""

from __future__ import annotations

from typing import NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped


class SpectrumStats(NamedTuple):
    """Per spectrum ([...] each): effective_rank `(||lambda||_1 / ||lambda||_2)^2` (1 for one component, d for a
    flat spectrum); top_k_mass, the share of `||Q||_F^2 = sum lambda^2` in the k largest |lambda|; balance
    `sum lambda / sum |lambda|` (+1 all positive, -1 all negative, 0 balanced)."""

    effective_rank: Float[torch.Tensor, "*spectra"]
    top_k_mass: Float[torch.Tensor, "*spectra"]
    balance: Float[torch.Tensor, "*spectra"]


@jaxtyped(typechecker=beartype)
def spectrum_stats(lambda_: Float[torch.Tensor, "*spectra d"], k: int = 8) -> SpectrumStats:
    """Statistics of full spectra lambda_ [..., d] (all eigenvalues, e.g. from eigendecompose(u, k=None)).

    Args:
        lambda_: eigenvalues lambda [..., d], the full spectrum of each interaction matrix.
        k: how many of the largest |lambda| count for `top_k_mass` (default 8; 1..d).

    Returns:
        `SpectrumStats(effective_rank, top_k_mass, balance)`, each [...] (one value per spectrum; 0 for an all-zero
        spectrum).

    Raises:
        ValueError: the spectrum is empty, or k lies outside 1..d.
    """
    if lambda_.ndim == 0 or lambda_.shape[-1] == 0:
        raise ValueError("spectrum_stats needs a non-empty spectrum [..., d].")
    if not 1 <= k <= lambda_.shape[-1]:
        raise ValueError(f"k must lie in 1..{lambda_.shape[-1]}, got {k}.")
    magnitude = lambda_.abs()
    l1, l2 = magnitude.sum(-1), magnitude.square().sum(-1)
    top = magnitude.topk(k, dim=-1).values.square().sum(-1)
    safe = torch.where(l1 > 0, l1, torch.ones_like(l1))
    return SpectrumStats(
        effective_rank=torch.where(l2 > 0, l1.square() / torch.where(l2 > 0, l2, 1.0), 0.0),
        top_k_mass=torch.where(l2 > 0, top / torch.where(l2 > 0, l2, 1.0), 0.0),
        balance=torch.where(l1 > 0, lambda_.sum(-1) / safe, 0.0),
    )


@jaxtyped(typechecker=beartype)
def eigenvector_similarity(
    v_a: Float[torch.Tensor, "k_a d_a"], v_b: Float[torch.Tensor, "k_b d_b"]
) -> Float[torch.Tensor, "k_a k_b"]:
    """|cosine| [k_a, k_b] between eigenvectors (rows of v_a [k_a, d] and v_b [k_b, d]); the sign of an eigenvector
    is arbitrary, so 1 means the same direction. Compare layers or models whose MLPs read the same space.

    Args:
        v_a: eigenvectors v as rows [k_a, d].
        v_b: eigenvectors v as rows [k_b, d], of the same size d.

    Returns:
        |cos| [k_a, k_b] in float64, each in [0, 1].

    Raises:
        ValueError: the eigenvectors have different sizes.
    """
    if v_a.shape[-1] != v_b.shape[-1]:
        raise ValueError(f"eigenvectors of different sizes ({v_a.shape[-1]} and {v_b.shape[-1]}) cannot be compared.")
    a = torch.nn.functional.normalize(v_a.double(), dim=-1)
    b = torch.nn.functional.normalize(v_b.double(), dim=-1)
    return (a @ b.mT).abs()
