"""Adversarial masks read from the weights (the papers' Fig. 7, App. M): a pixel pattern that, added to images of
other classes, makes the model call them `target`.

- `method="eigen"`: the target's top eigen-image (largest positive lambda): adding it grows (v . e)^2, which
  counts for the target with weight lambda.
- `method="pinv"`: the papers' variant: stack every class's top positive eigen-image as rows P [n_classes, n_pixels]
  and take m = pinv(P) e_target, the least-norm mask that moves the target's eigen-direction by one unit and holds
  every other class's at zero.

The mask is scaled to the asked L2 `norm`; its sign (free: an eigenvector's is arbitrary) is the one that adds
more ink than it removes (positive pixel sum), since images are mostly background at 0 and are clipped to [0, 1].
The baseline is the same mask with its pixels permuted: the same norm and values, no eigen-structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped

from hooked_bilinear.vision.eigenimages import eigen_images
from hooked_bilinear.vision.model import BilinearClassifier

METHODS = ("eigen", "pinv")


def top_positive_images(model: BilinearClassifier) -> Float[torch.Tensor, "n_classes n_pixels"]:
    """Each class's eigen-image of largest positive eigenvalue (float64)."""
    found = eigen_images(model)
    masked = torch.where(found.lambda_ > 0, found.lambda_, torch.full_like(found.lambda_, -torch.inf))
    if torch.isinf(masked.max(1).values).any():
        raise ValueError("a class's interaction matrix has no positive eigenvalue: no eigen-image pushes towards it.")
    index = masked.argmax(1)
    return found.images[torch.arange(len(index)), index]


@jaxtyped(typechecker=beartype)
def adversarial_mask(
    model: BilinearClassifier, target: int, norm: float = 1.0, method: str = "eigen"
) -> Float[torch.Tensor, " n_pixels"]:
    """A pixel-space mask [n_pixels] of L2 norm `norm` pushing inputs towards class `target` (see the module doc).

    Args:
        model: the classifier.
        target: the class to push towards, in 0..n_classes - 1.
        norm: the mask's L2 norm (default 1.0; positive).
        method: "eigen" (the target's top positive eigen-image, default) or "pinv" (the least-norm mask through the
            pseudo-inverse of every class's top positive eigen-image).

    Returns:
        The mask [n_pixels], in the model's dtype, signed so that its pixel sum is non-negative.

    Raises:
        ValueError: `target` is not a class, `method` is unknown, `norm` is not positive, or a class's interaction
            matrix has no positive eigenvalue.
    """
    n_classes = model.config.n_classes
    if not 0 <= target < n_classes:
        raise ValueError(f"target must be a class in 0..{n_classes - 1}, got {target}.")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if not norm > 0:
        raise ValueError(f"norm must be positive, got {norm}.")
    images = top_positive_images(model)
    mask = images[target] if method == "eigen" else torch.linalg.pinv(images)[:, target]
    if mask.sum() < 0:
        mask = -mask
    return (mask * (norm / mask.norm())).to(model.W_E.dtype)


@jaxtyped(typechecker=beartype)
def apply_mask(
    pixels: Float[torch.Tensor, "*batch n_pixels"], mask: Float[torch.Tensor, " n_pixels"]
) -> Float[torch.Tensor, "*batch n_pixels"]:
    """Images with the mask added, clipped to [0, 1] (valid pixels).

    Args:
        pixels: flat images [..., n_pixels] in [0, 1].
        mask: the mask [n_pixels] (e.g. `adversarial_mask`), cast to the images' dtype.

    Returns:
        The masked images [..., n_pixels], clipped to [0, 1].
    """
    return (pixels + mask.to(pixels.dtype)).clamp(0.0, 1.0)


class MaskCurve(NamedTuple):
    """For each norm, averaged over targets: the share of other-class test images sent to the target by the mask
    (rate) and by its pixel-permuted copies (baseline_rate), and the accuracy on all masked test images."""

    norms: list[float]
    rate: list[float]
    baseline_rate: list[float]
    accuracy: list[float]
    baseline_accuracy: list[float]


@jaxtyped(typechecker=beartype)
def mask_curve(
    model: BilinearClassifier,
    pixels: Float[torch.Tensor, "n n_pixels"],
    labels: Int[torch.Tensor, " n"],
    norms: Sequence[float],
    method: str = "eigen",
    targets: Sequence[int] | None = None,
    permutations: int = 10,
    seed: int = 0,
) -> MaskCurve:
    """Misclassification-into-target rate and accuracy against mask norm, for the mask and the permuted baseline.

    Args:
        model: the classifier.
        pixels: the test images [n, n_pixels].
        labels: their labels [n].
        norms: the mask norms to measure at.
        method: the mask's method, "eigen" (default) or "pinv" (see `adversarial_mask`).
        targets: the target classes averaged over (default: every class).
        permutations: the number of pixel-permuted copies of each mask for the baseline (default 10).
        seed: the seed of the permutations (default 0).

    Returns:
        A `MaskCurve`: per norm, averaged over targets, the rate of other-class images sent to the target by the
        mask and by its permuted copies, and the accuracy on all masked images for each.

    Raises:
        ValueError: as `adversarial_mask` (a target not a class, an unknown method, a norm not positive).
    """
    targets = list(range(model.config.n_classes)) if targets is None else list(targets)
    generator = torch.Generator().manual_seed(seed)
    n_pixels = model.config.n_pixels
    curve = MaskCurve([float(n) for n in norms], [], [], [], [])
    with torch.no_grad():
        for norm in norms:
            sums = torch.zeros(4, dtype=torch.float64)
            for target in targets:
                mask = adversarial_mask(model, target, norm=float(norm), method=method)
                other = labels != target
                logits = model(apply_mask(pixels, mask)).argmax(-1)
                sums[0] += (logits[other] == target).double().mean()
                sums[2] += (logits == labels).double().mean()
                for _ in range(permutations):
                    shuffled = mask[torch.randperm(n_pixels, generator=generator)]
                    logits = model(apply_mask(pixels, shuffled)).argmax(-1)
                    sums[1] += (logits[other] == target).double().mean() / permutations
                    sums[3] += (logits == labels).double().mean() / permutations
            sums /= len(targets)
            curve.rate.append(sums[0].item())
            curve.baseline_rate.append(sums[1].item())
            curve.accuracy.append(sums[2].item())
            curve.baseline_accuracy.append(sums[3].item())
    return curve
