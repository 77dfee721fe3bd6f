"""Every plot writes a PNG of what it claims to draw: the figures are checked for their data, axes and titles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hooked_bilinear.vision import (
    eigen_images,
    explain_input,
    mask_curve,
    plots,
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


def _image(ax) -> np.ndarray:
    return np.asarray(ax.get_images()[0].get_array())


def _line(ax, label: str) -> tuple[list[float], list[float]]:
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    return list(line.get_xdata()), list(line.get_ydata())


def test_every_plot_writes_a_png_of_its_data(tmp_path, monkeypatch: pytest.MonkeyPatch):
    drawn = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: (drawn.append(fig), save(fig, path))[1])
    model = random_model()
    x, labels = random_pixels(20), torch.arange(20) % 10
    found = eigen_images(model)
    truncation = truncation_accuracy(model, x, labels, [0, 1, 12])
    curve = mask_curve(model, x, labels, [0.5, 1.0], targets=[1], permutations=1)
    masks = torch.randn(10, 64)
    sweep = NoiseSweep(
        [0.0, 0.1],
        [0.9, 0.95],
        [1.0, 0.99],
        [OverfittingStats(0.2, 4.0, 1.5, 19), OverfittingStats(0.1, 6.0, 1.8, 19)],
    )
    explanation = explain_input(model, x[0])
    rare = torch.arange(64) < 8
    paths = [
        plot_class_grid(found, (8, 8), tmp_path / "grid.png"),
        plot_class_spectrum(found, 3, (8, 8), tmp_path / "spectrum.png"),
        plot_truncation(truncation, tmp_path / "truncation.png"),
        plot_mask_curves({"eigen": curve}, 2.0, tmp_path / "curves.png"),
        plot_masks(masks, x[:10], list(range(10)), (8, 8), tmp_path / "masks.png", "eigen"),
        plot_noise_sweep(sweep, tmp_path / "sweep.png"),
        plot_explanation(explanation, x[0], (8, 8), tmp_path / "explanation.png"),
        plot_outlier_comparison({"a": found, "b": found}, rare, (8, 8), tmp_path / "outliers.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid, spectrum, trunc, curves, mask_fig, sweep_fig, explain_fig, outliers = drawn
    lambda_ = found.lambda_.double()

    # the grid: per class, the top positive eigen-image with its lambda in the title
    assert grid._suptitle.get_text() == "top eigen-images per class" and len(grid.axes) == 20
    for c in range(10):
        top = int(lambda_[c].argmax())
        assert lambda_[c, top] > 0
        assert np.allclose(_image(grid.axes[c]), found.images[c, top].double().reshape(8, 8).numpy())
        assert grid.axes[c].get_title() == f"{c}: λ={lambda_[c, top].item():+.2f}"

    # the spectrum: class 3's eigenvalues, sorted, as bars
    bars = spectrum.axes[0]
    assert bars.get_title() == "class 3: spectrum of Q_c" and bars.get_ylabel() == "λ"
    heights = [patch.get_height() for patch in bars.patches]
    assert np.allclose(heights, lambda_[3].sort().values.numpy())

    # truncation: accuracy against k, and the full model's line
    ax = trunc.axes[0]
    assert _line(ax, "top-k eigencomponents per class") == (list(truncation.ks), list(truncation.accuracy))
    full = [line for line in ax.get_lines() if line.get_label().startswith("full model")]
    assert list(full[0].get_ydata()) == [truncation.full] * 2
    assert ax.get_xlabel().startswith("eigencomponents kept") and ax.get_ylabel() == "test accuracy"

    # adversarial curves: success rate and accuracy against the mask norm, with their permuted baselines
    left, right = curves.axes
    assert _line(left, "eigen mask") == (list(curve.norms), list(curve.rate))
    assert _line(left, "eigen, pixels permuted") == (list(curve.norms), list(curve.baseline_rate))
    assert _line(right, "eigen mask") == (list(curve.norms), list(curve.accuracy))
    assert _line(right, "eigen, pixels permuted") == (list(curve.norms), list(curve.baseline_accuracy))
    assert list(_line(left, "¼ mean image norm")[0]) == [0.5, 0.5]

    # masks: each target's mask above an image with the model's prediction
    assert mask_fig._suptitle.get_text() == "eigen masks"
    for t in range(10):
        assert np.allclose(_image(mask_fig.axes[t]), masks[t].double().reshape(8, 8).numpy())
        assert np.allclose(_image(mask_fig.axes[10 + t]), x[t].double().reshape(8, 8).numpy())
        assert mask_fig.axes[t].get_title() == f"mask → {t}" and mask_fig.axes[10 + t].get_title() == f"predicted {t}"

    # the noise sweep: accuracies, outlier energy and effective rank against the noise std
    accuracy_ax, energy_ax, rank_ax = sweep_fig.axes
    assert _line(accuracy_ax, "test") == ([0.0, 0.1], [0.9, 0.95])
    assert _line(accuracy_ax, "train") == ([0.0, 0.1], [1.0, 0.99])
    assert list(energy_ax.get_lines()[0].get_ydata()) == [0.2, 0.1]
    assert list(rank_ax.get_lines()[0].get_ydata()) == [4.0, 6.0]
    assert all(ax.get_xlabel() == "input noise std" for ax in sweep_fig.axes)

    # the explanation: the input, then per top class its logit and largest contributions
    assert np.allclose(_image(explain_fig.axes[0]), x[0].double().reshape(8, 8).numpy())
    top = explanation.logits.argsort(descending=True)[:3].tolist()
    titles = [ax.get_title() for ax in explain_fig.axes if ax.get_title().startswith("class ")]
    assert titles == [f"class {c}: logit {explanation.logits[c].item():.2f}" for c in top]

    # outliers: each model's top eigen-image per class, the rare pixels dotted over it
    assert len(outliers.axes) == 20 and outliers.axes[0].get_ylabel() == "a" and outliers.axes[10].get_ylabel() == "b"
    dots = outliers.axes[0].collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(dots).tolist())) == [(float(col), 0.0) for col in range(8)]
    for c in range(10):
        assert np.allclose(_image(outliers.axes[c]), found.images[c, 0].double().reshape(8, 8).numpy())
