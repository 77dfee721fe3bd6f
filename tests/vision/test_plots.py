"""Every plot writes a PNG."""

from __future__ import annotations

import torch

from hooked_bilinear.vision import (
    eigen_images,
    explain_input,
    mask_curve,
    truncation_accuracy,
)
from hooked_bilinear.vision.overfitting import NoiseSweep, OverfittingStats
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
from tests.vision.vision_models import random_model, random_pixels


def test_every_plot_writes_a_png(tmp_path):
    model = random_model()
    x, labels = random_pixels(20), torch.arange(20) % 10
    found = eigen_images(model)
    paths = [
        plot_class_grid(found, (8, 8), tmp_path / "grid.png", reference=x.mean(0)),
        plot_class_spectrum(found, 3, (8, 8), tmp_path / "spectrum.png"),
        plot_truncation(truncation_accuracy(model, x, labels, [0, 1, 12]), tmp_path / "truncation.png"),
        plot_mask_curves(
            {"eigen": mask_curve(model, x, labels, [0.5, 1.0], targets=[1], permutations=1)},
            2.0,
            tmp_path / "curves.png",
        ),
        plot_masks(torch.randn(10, 64), x[:10], list(range(10)), (8, 8), tmp_path / "masks.png", "eigen"),
        plot_noise_sweep(
            NoiseSweep(
                [0.0, 0.1],
                [0.9, 0.95],
                [1.0, 0.99],
                [OverfittingStats(0.2, 4.0, 1.5, 19), OverfittingStats(0.1, 6.0, 1.8, 19)],
            ),
            tmp_path / "sweep.png",
        ),
        plot_explanation(explain_input(model, x[0]), x[0], (8, 8), tmp_path / "explanation.png"),
        plot_outlier_comparison({"a": found, "b": found}, torch.arange(64) < 8, (8, 8), tmp_path / "outliers.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
