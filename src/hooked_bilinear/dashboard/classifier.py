"""The data an image-classifier dashboard embeds: per class, the spectrum of Q_c, its eigen-images with their
eigenvalues, their shares of the class logit and the test images that drive them, and the adversarial masks.

`logit_c = sum_k lambda_ck (v_ck . e')^2 (+ b_c)` with e = W_E x, so the eigen-image `W_E^T v_ck` is the pixel
pattern whose squared overlap with an image the component weighs by lambda_ck. Each eigen-image is flipped to
correlate with the mean digit (`orient`; its sign is free). The masks are `adversarial_mask` at a quarter of the
mean test image's norm, with the rate at which they send other-class test images to the target, and the rate of
the same mask with its pixels permuted (`mask_curve`).
"""

from __future__ import annotations

from typing import Any

import torch

from hooked_bilinear.dashboard.data import _num, _nums, shown_components, spectrum_summary
from hooked_bilinear.vision.adversarial import METHODS, adversarial_mask, mask_curve
from hooked_bilinear.vision.data import load_split
from hooked_bilinear.vision.eigenimages import eigen_images, orient
from hooked_bilinear.vision.model import BilinearClassifier

IMAGES_PER_COMPONENT = 4
MASK_PERMUTATIONS = 5


def classifier_data(model: BilinearClassifier, *, k: int = 8, root: Any = None, progress: Any = None) -> dict:
    """Everything a classifier dashboard shows (see the module doc).

    Args:
        model: the classifier.
        k: eigen-images shown per class.
        root: the data folder for MNIST / Fashion-MNIST (see `vision.load_split`).
        progress: a tqdm bar, one step per class (None: none).

    Returns:
        The page's JSON-ready data.
    """
    split = load_split(model.config, root=root)
    x, y = split.test_x, split.test_y
    found = eigen_images(model, None)
    factors = model.mlp.factors(dtype=torch.float64)
    with torch.no_grad():
        e = factors.augment(model.embed(x).double())
        predicted = model(x).argmax(-1)
    mean_image = x.mean(0).double()
    norm = 0.25 * float(x.norm(dim=-1).mean())
    shown_images: set[int] = set()
    classes: list[dict[str, Any]] = []
    for c in range(model.config.n_classes):
        lam, v = found.lambda_[c], found.v[c]
        images = orient(found.images[c], mean_image)
        projection = e @ v.T  # [n_test, d_in]
        contribution = lam * projection.square()
        total = contribution.abs().sum().clamp_min(torch.finfo(contribution.dtype).tiny)
        shown = shown_components(lam, k)
        components = []
        for index in shown:
            strength = contribution[:, index] * torch.sign(lam[index])  # how much each test image drives it
            top = strength.topk(IMAGES_PER_COMPONENT)
            shown_images.update(top.indices.tolist())
            components.append(
                {
                    "index": index,
                    "lambda": _num(lam[index], 6),
                    "share": _num(contribution[:, index].abs().sum() / total, 4),
                    "image": _nums(images[index], 4),
                    "top_images": [[int(i), _num(contribution[i, index], 4)] for i in top.indices.tolist()],
                }
            )
        masks = {}
        for method in METHODS:
            mask = adversarial_mask(model, c, norm=norm, method=method)
            curve = mask_curve(model, x, y, [norm], method=method, targets=[c], permutations=MASK_PERMUTATIONS)
            masks[method] = {
                "image": _nums(mask.double(), 4),
                "rate": _num(curve.rate[0], 4),
                "baseline_rate": _num(curve.baseline_rate[0], 4),
            }
        in_class = y == c
        classes.append(
            {
                "label": str(c),
                "stats": {
                    **spectrum_summary(lam, k),
                    "accuracy": _num((predicted[in_class] == c).double().mean(), 4),
                },
                "spectrum": _nums(lam.sort(descending=True).values),
                "eigen": components,
                "masks": masks,
                "mean_image": _nums(x[in_class].mean(0).double(), 4),
            }
        )
        if progress is not None:
            progress.update(1)
    height, width = model.config.image_shape
    return {
        "kind": "classifier",
        "dataset": model.config.dataset,
        "image_shape": [height, width],
        "k": k,
        "test_images": len(y),
        "test_accuracy": _num((predicted == y).double().mean(), 4),
        "mask_norm": _num(norm, 4),
        "classes": classes,
        "images": {str(i): _nums(x[i].double(), 3) + [int(y[i])] for i in sorted(shown_images)},
    }
