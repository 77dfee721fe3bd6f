"""Per-input explanation (the papers' App. C): each class logit of one image split over its eigencomponents,
`logit_c = sum_k lambda_ck (v_ck . e)^2`, through the shared `decompose`."""

from __future__ import annotations

from typing import NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

from hooked_bilinear.vision.model import BilinearClassifier


class InputExplanation(NamedTuple):
    """logits [n_classes]; contributions [n_classes, d_in] (`lambda_ck (v_ck . e')^2`, eigenpairs by |lambda|
    descending; each row sums to its logit, less a head bias), lambda_ [n_classes, d_in], images [n_classes, d_in,
    n_pixels] (the eigen-images)."""

    logits: torch.Tensor
    contributions: torch.Tensor
    lambda_: torch.Tensor
    images: torch.Tensor


@jaxtyped(typechecker=beartype)
def explain_input(
    model: BilinearClassifier, pixels: Float[torch.Tensor, " n_pixels"], dtype: torch.dtype = torch.float64
) -> InputExplanation:
    """The eigencomponent contributions to every class logit of one image [n_pixels].

    Args:
        model: the classifier.
        pixels: one flat image [n_pixels].
        dtype: the dtype of the decomposition (default float64).

    Returns:
        `InputExplanation`: logits [n_classes], contributions [n_classes, d_in], lambda_ [n_classes, d_in] and the
        eigen-images [n_classes, d_in, n_pixels].
    """
    with torch.no_grad():
        logits, cache = model.run_with_cache(pixels[None], names_filter="mlp.hook_in")
    parts = model.mlp.decompose(cache["mlp.hook_in"][0], model.class_directions(), dtype=dtype)
    return InputExplanation(logits[0].to(dtype), parts.contributions, parts.lambda_, model.to_pixels(parts.v))
