"""Eigen-images: the eigenvectors of each class's interaction matrix read in pixel space.

`logit_c = sum_k lambda_ck (v_ck . e)^2` with e = W_E x, and `v . e = (W_E^T v) . x`, so the eigen-image
`W_E^T v_ck` [n_pixels] is the pixel pattern whose squared overlap with the image the component weighs by lambda_ck:
positive eigenvalues vote for class c, negative ones against (the papers' Fig. 2-3).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

from hooked_bilinear.vision.model import BilinearClassifier


class EigenImages(NamedTuple):
    """Per class, by |lambda| descending: lambda_ [n_classes, k], v [n_classes, k, d_in] (embedding space) and
    images [n_classes, k, n_pixels] (`W_E^T v`)."""

    lambda_: torch.Tensor
    v: torch.Tensor
    images: torch.Tensor


@jaxtyped(typechecker=beartype)
def eigen_images(model: BilinearClassifier, k: int | None = None, dtype: torch.dtype = torch.float64) -> EigenImages:
    """The top-|lambda| k eigenpairs (all when None) of every class's Q_c, through the shared analysis code
    (`model.mlp.eigendecompose` on `model.class_directions()`), with their eigen-images.

    Args:
        model: the classifier.
        k: the number of eigenpairs kept per class, by |lambda| descending (default None: all d_in).
        dtype: the dtype of the eigendecomposition (default float64).

    Returns:
        `EigenImages`: lambda_ [n_classes, k], v [n_classes, k, d_in] and images [n_classes, k, n_pixels].
    """
    eigen = model.mlp.eigendecompose(model.class_directions(), k, dtype=dtype)
    return EigenImages(eigen.lambda_, eigen.v, model.to_pixels(eigen.v))


@jaxtyped(typechecker=beartype)
def signed_top(lambda_: Float[torch.Tensor, " k"], n: int) -> tuple[list[int], list[int]]:
    """Indices of the n largest positive and the n most negative eigenvalues (fewer if the spectrum has fewer)."""
    order = lambda_.argsort(descending=True).tolist()
    positive = [i for i in order if lambda_[i] > 0][:n]
    negative = [i for i in reversed(order) if lambda_[i] < 0][:n]
    return positive, negative


@jaxtyped(typechecker=beartype)
def orient(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Flip each image [..., n_pixels] so that it correlates non-negatively with `reference` [n_pixels] (e.g. the
    mean digit): the sign of an eigenvector is arbitrary, and (v . e)^2 does not see it; this only eases reading."""
    sign = torch.where((images * reference.to(images.dtype)).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    return images * sign.to(images.dtype)
