"""Eigenvector similarity across models (the papers' Fig. 5A): do models of different seeds or widths learn the
same eigen-images? Embeddings differ between models, so eigenvectors are compared in pixel space (the eigen-images,
`analysis.eigenvector_similarity`: |cos|, the sign being arbitrary)."""

from __future__ import annotations

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

from hooked_bilinear.analysis.spectrum import eigenvector_similarity
from hooked_bilinear.vision.eigenimages import eigen_images
from hooked_bilinear.vision.model import BilinearClassifier


@jaxtyped(typechecker=beartype)
def eigen_image_similarity(
    a: BilinearClassifier, b: BilinearClassifier, k: int = 4
) -> Float[torch.Tensor, "n_classes k"]:
    """Per class and top-k eigen-image of `a` (by |lambda|), the best |cos| with any of `b`'s top-k of the same
    class: [n_classes, k].

    Args:
        a: the model whose eigen-images are matched.
        b: the model they are matched in (same number of pixels and classes).
        k: the number of top eigen-images per class of each model (default 4).

    Returns:
        The best |cos| [n_classes, k], in [0, 1].

    Raises:
        ValueError: the models read different numbers of pixels.
    """
    if a.config.n_pixels != b.config.n_pixels:
        raise ValueError(f"models read {a.config.n_pixels} and {b.config.n_pixels} pixels: nothing to compare.")
    images_a, images_b = eigen_images(a, k).images, eigen_images(b, k).images
    return torch.stack(
        [eigenvector_similarity(x, y).max(dim=1).values for x, y in zip(images_a, images_b, strict=True)]
    )
