"""Higher-order SVD of B along its output mode: the output directions the layer writes most, and their eigenpairs.

The mode-1 unfolding of B [d_out, d_in * d_in] has left singular vectors = eigenvectors of the Gram matrix
`M = B_(1) B_(1)^T`, which `output_gram` builds from d_hidden x d_hidden products, never from B. With them
`B = sum_r u_r (x) Q_{u_r}` over all d_out orthonormal directions u_r, and keeping r of them is the best rank-r
approximation of the output mode: `B ~= sum_{i<r} u_i (x) Q_{u_i}`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

from hooked_bilinear.analysis.eigen import DEFAULT_SOLVER, EigenSolver
from hooked_bilinear.analysis.factors import Layer, as_factors
from hooked_bilinear.analysis.interaction import output_gram


class HOSVD(NamedTuple):
    """sigma [r] (singular values of B_(1), descending), u [r, d_out] (orthonormal output directions),
    lambda_ [r, k], v [r, k, d_in] (eigenpairs of each Q_{u_i} by |lambda| descending)."""

    sigma: Float[torch.Tensor, " r"]
    u: Float[torch.Tensor, "r d_out"]
    lambda_: Float[torch.Tensor, "r k"]
    v: Float[torch.Tensor, "r k d_in"]


@jaxtyped(typechecker=beartype)
def hosvd(
    factors: Layer,
    r: int,
    k: int | None = None,
    *,
    solver: EigenSolver = DEFAULT_SOLVER,
) -> HOSVD:
    """The top-r output directions of B and the eigendecomposition (top-k, or all when k is None) of each.

    Args:
        factors: the layer: `BilinearFactors`, or a bilinear MLP component (`model.blocks[l].mlp`).
        r: how many output directions, 1..d_out.
        k: how many eigenpairs per direction, largest |lambda| first; None (default) for all d_in.
        solver: how the eigenpairs are found (default `EigenSolver()`: `eigendecompose`'s defaults).

    Returns:
        `HOSVD(sigma, u, lambda_, v)`: singular values [r] (descending), output directions u [r, d_out], eigenvalues
        lambda [r, k] and eigenvectors v [r, k, d_in] of each Q_{u_i}.

    Raises:
        ValueError: r outside 1..d_out, or k outside 1..d_in.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    factors = as_factors(factors)
    if not 1 <= r <= factors.d_out:
        raise ValueError(
            f"r={r} output directions asked for, but the layer writes d_out={factors.d_out}: pass 1 <= r <= {factors.d_out}."
        )
    gram_eigenvalues, gram_vectors = torch.linalg.eigh(output_gram(factors))
    order = gram_eigenvalues.argsort(descending=True)[:r]
    sigma = gram_eigenvalues[order].clamp_min(0).sqrt()
    u = gram_vectors[:, order].T.contiguous()
    eigen = solver(factors, u, k)
    return HOSVD(sigma, u, eigen.lambda_, eigen.v)
