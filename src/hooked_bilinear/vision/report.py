"""Every analysis of the case study on a model and its unregularised twin: the numbers and the PNGs."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from hooked_bilinear.vision.adversarial import adversarial_mask, apply_mask, mask_curve
from hooked_bilinear.vision.data import load_split
from hooked_bilinear.vision.eigenimages import eigen_images
from hooked_bilinear.vision.explain import explain_input
from hooked_bilinear.vision.model import BilinearClassifier
from hooked_bilinear.vision.overfitting import (
    noise_sweep,
    overfitting_stats,
    rare_pixels,
)
from hooked_bilinear.vision.plots import (
    plot_class_grid,
    plot_class_spectrum,
    plot_explanation,
    plot_mask_curves,
    plot_masks,
    plot_noise_sweep,
    plot_outlier_comparison,
    plot_truncation,
)
from hooked_bilinear.vision.similarity import eigen_image_similarity
from hooked_bilinear.vision.train import accuracy, train_classifier
from hooked_bilinear.vision.truncation import truncation_accuracy

logger = logging.getLogger(__name__)

#: Mask norms as fractions of the mean test-image norm.
NORM_FRACTIONS = (0.0625, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0)


def identity_error(model: BilinearClassifier, pixels: torch.Tensor) -> float:
    """max over classes of max_x |e'^T Q_c e' - logit_c| / max_x |logit_c|, in float64 on cached activations."""
    model64 = BilinearClassifier(model.config).double()
    model64.load_state_dict(model.state_dict())
    with torch.no_grad():
        logits, cache = model64.run_with_cache(pixels.double(), names_filter="mlp.hook_in")
    e = model64.augment(cache["mlp.hook_in"])
    quadratic = torch.einsum("bi,cij,bj->bc", e, model64.class_matrices(), e)
    return ((quadratic - logits).abs().amax(0) / logits.abs().amax(0)).max().item()


def classifier_report(
    model: BilinearClassifier,
    out: str | Path,
    noreg: BilinearClassifier | None = None,
    root: str | Path | None = None,
    sweep_stds: tuple[float, ...] = (),
    sweep_epochs: int | None = None,
    seeds: tuple[int, ...] = (),
    widths: tuple[int, ...] = (),
    spectrum_class: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Numbers of every analysis (also written to out/report.json) and the figures in `out`.

    `noreg`: the same model trained without input noise, for the overfitting comparison. `sweep_stds`: retrain
    the model's config at these noise stds (epochs `sweep_epochs`, default the config's) for the sweep figure.
    `seeds`: retrain at these seeds, `widths`: at these bilinear widths d_hidden, and compare each one's top-4
    eigen-images with the model's (best |cos| per class and rank, mean over classes).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config
    split = load_split(config, root)
    shape = config.image_shape
    reference = split.train_x.mean(0).double()
    result: dict[str, Any] = {
        "dataset": config.dataset,
        "test_size": config.test_size,
        "seed": config.seed,
        "noise_std": config.noise_std,
    }
    result["test_accuracy"] = accuracy(model, split.test_x, split.test_y)
    result["train_accuracy"] = accuracy(model, split.train_x, split.train_y)
    result["identity_max_relative_error"] = identity_error(model, split.test_x)

    found = eigen_images(model)
    plot_class_grid(found, shape, out / "eigen_images.png", reference, title=f"top eigen-images ({config.dataset})")
    plot_class_spectrum(found, spectrum_class, shape, out / f"spectrum_class{spectrum_class}.png", reference=reference)

    d_in = found.lambda_.shape[1]
    ks = sorted({0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, d_in} & set(range(d_in + 1)))
    truncation = truncation_accuracy(model, split.test_x, split.test_y, ks)
    plot_truncation(truncation, out / "truncation.png", title=f"truncation ({config.dataset})")
    result["truncation"] = dict(zip(map(str, truncation.ks), truncation.accuracy, strict=True))

    mean_norm = split.test_x.norm(dim=1).mean().item()
    norms = [f * mean_norm for f in NORM_FRACTIONS]
    curves = {
        method: mask_curve(model, split.test_x, split.test_y, norms, method=method) for method in ("eigen", "pinv")
    }
    plot_mask_curves(curves, mean_norm, out / "adversarial_curves.png")
    quarter = NORM_FRACTIONS.index(0.25)
    result["mean_image_norm"] = mean_norm
    result["adversarial"] = {
        method: {
            "norm_fraction": list(NORM_FRACTIONS),
            "rate": c.rate,
            "baseline_rate": c.baseline_rate,
            "accuracy": c.accuracy,
            "ratio_at_quarter_norm": c.rate[quarter] / max(c.baseline_rate[quarter], 1e-12),
        }
        for method, c in curves.items()
    }
    for method in ("eigen", "pinv"):
        masks = torch.stack([adversarial_mask(model, t, norm=0.5 * mean_norm, method=method) for t in range(10)])
        examples = torch.stack([apply_mask(split.test_x[split.test_y != t][0], masks[t]) for t in range(10)])
        with torch.no_grad():
            predictions = model(examples).argmax(-1).tolist()
        plot_masks(masks, examples, predictions, shape, out / f"adversarial_masks_{method}.png", method)

    explanation = explain_input(model, split.test_x[0])
    plot_explanation(explanation, split.test_x[0], shape, out / "explanation.png")
    result["explained_image_label"] = int(split.test_y[0])

    stats = overfitting_stats(model, split.train_x)
    result["overfitting"] = {"model": stats._asdict()}
    if noreg is not None:
        result["overfitting"]["noreg"] = overfitting_stats(noreg, split.train_x)._asdict()
        result["noreg_test_accuracy"] = accuracy(noreg, split.test_x, split.test_y)
        found_noreg = eigen_images(noreg)
        plot_class_grid(
            found_noreg,
            shape,
            out / "eigen_images_noreg.png",
            reference,
            title=f"top eigen-images, no input noise ({config.dataset})",
        )
        plot_outlier_comparison(
            {f"noise {config.noise_std}": found, f"noise {noreg.config.noise_std}": found_noreg},
            rare_pixels(split.train_x),
            shape,
            out / "overfitting_outliers.png",
            reference,
        )
    if sweep_stds:
        base = config if sweep_epochs is None else replace(config, epochs=sweep_epochs)
        sweep = noise_sweep(base, split, sweep_stds, progress=progress)
        plot_noise_sweep(sweep, out / "noise_sweep.png")
        result["noise_sweep"] = {
            "epochs": base.epochs,
            "noise_std": sweep.noise_std,
            "test_accuracy": sweep.test_accuracy,
            "train_accuracy": sweep.train_accuracy,
            "stats": [s._asdict() for s in sweep.stats],
        }
    if seeds:
        similarity = {}
        for seed in seeds:
            other, _ = train_classifier(replace(config, seed=seed), split, progress=progress)
            similarity[str(seed)] = eigen_image_similarity(model, other).mean(0).tolist()
        result["seed_similarity_top4"] = similarity
    if widths:
        similarity = {}
        for width in widths:
            other, _ = train_classifier(replace(config, d_hidden=width), split, progress=progress)
            similarity[str(width)] = eigen_image_similarity(model, other).mean(0).tolist()
        result["width_similarity_top4"] = similarity
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    logger.info("vision report written to %s", out)
    return result
