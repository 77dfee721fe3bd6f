"""Per-input contributions of the eigencomponents: `u . out(x) = sum_k lambda_k (v_k . x')^2`."""

from __future__ import annotations

from typing import NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

from hooked_bilinear.analysis.eigen import DEFAULT_SOLVER, EigenSolver
from hooked_bilinear.analysis.factors import Layer, as_factors


class Decomposition(NamedTuple):
    """contributions [*batch, k] (one direction) or [*batch, n, k]: `lambda_k (v_k . x')^2`, with their eigenpairs.

    With all d_in eigenpairs (k=None) the contributions sum to `u . out(x)` exactly.
    """

    contributions: Float[torch.Tensor, "*batch_n k"]
    lambda_: Float[torch.Tensor, "*n k"]
    v: Float[torch.Tensor, "*n k d_in"]


@jaxtyped(typechecker=beartype)
def decompose(
    factors: Layer,
    x: Float[torch.Tensor, "*batch d_x"],
    u: Float[torch.Tensor, "*n d_out"],
    k: int | None = None,
    *,
    solver: EigenSolver = DEFAULT_SOLVER,
) -> Decomposition:
    """Split `u . out(x)` over the eigencomponents of Q_u, for MLP inputs x [*batch, d_model] (hook_in activations).

    Args:
        factors: the layer: `BilinearFactors`, or a bilinear MLP component (`model.blocks[l].mlp`).
        x: MLP inputs [*batch, d_model] (hook_in activations; x' = [x, 1] is formed here for a layer with biases).
        u: output direction(s) [d_out] or [n, d_out].
        k: how many eigenpairs, largest |lambda| first; None (default) for all d_in, whose contributions sum to
            `u . out(x)`.
        solver: how the eigenpairs are found (default `EigenSolver()`: `eigendecompose`'s defaults).

    Returns:
        `Decomposition(contributions, lambda_, v)`: contributions `lambda_k (v_k . x')^2` [*batch, k] for one
        direction, [*batch, n, k] for n; eigenvalues lambda [k] or [n, k]; eigenvectors v [k, d_in] or [n, k, d_in].

    Raises:
        ValueError: x is not of size d_model, u not [d_out] or [n, d_out], or k outside 1..d_in.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    factors = as_factors(factors)
    eigen = solver(factors, u, k)
    x_aug = factors.augment(x)
    if u.ndim == 1:
        projections = x_aug @ eigen.v.mT  # [*batch, k]
    else:
        projections = torch.einsum("...i,nki->...nk", x_aug, eigen.v)
    return Decomposition(eigen.lambda_ * projections.square(), eigen.lambda_, eigen.v)
