"""Pictures of the image-classifier analyses, saved as PNG (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from hooked_bilinear.analysis.plots import PathLike, pyplot, save_figure
from hooked_bilinear.vision.adversarial import MaskCurve
from hooked_bilinear.vision.eigenimages import EigenImages, orient, signed_top
from hooked_bilinear.vision.explain import InputExplanation
from hooked_bilinear.vision.overfitting import NoiseSweep
from hooked_bilinear.vision.truncation import TruncationAccuracy

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Line colours, one per curve family (more families than colours are not drawn).
COLORS = ("tab:blue", "tab:orange", "tab:green")


def _show(ax: Axes, image: torch.Tensor, shape: tuple[int, int], title: str = "", signed: bool = True) -> None:
    grid = image.detach().double().cpu().reshape(shape)
    if signed:
        limit = grid.abs().max().item() or 1.0
        ax.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit)
    else:
        ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def plot_class_grid(
    found: EigenImages,
    shape: tuple[int, int],
    path: PathLike,
    reference: torch.Tensor | None = None,
    title: str = "top eigen-images per class",
) -> Path:
    """Two rows, one column per class: its top positive and its top negative eigen-image, with lambda (Fig. 2B)."""
    plt = pyplot()
    n = found.lambda_.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.2))
    for c in range(n):
        positive, negative = signed_top(found.lambda_[c], 1)
        for row, picks in enumerate((positive, negative)):
            ax = axes[row, c]
            if not picks:
                ax.axis("off")
                continue
            image = found.images[c, picks[0]]
            if reference is not None:
                image = orient(image, reference)
            _show(ax, image, shape, f"{c}: λ={found.lambda_[c, picks[0]].item():+.2f}")
    axes[0, 0].set_ylabel("top +", fontsize=8)
    axes[1, 0].set_ylabel("top −", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_class_spectrum(
    found: EigenImages,
    c: int,
    shape: tuple[int, int],
    path: PathLike,
    n: int = 3,
    reference: torch.Tensor | None = None,
) -> Path:
    """Class c's eigenvalues (sorted) above its n most positive and n most negative eigen-images (Fig. 3)."""
    plt = pyplot()
    fig = plt.figure(figsize=(2 * n * 1.2 + 1, 4.6))
    grid = fig.add_gridspec(2, 2 * n, height_ratios=[1.2, 1])
    ax = fig.add_subplot(grid[0, :])
    values = found.lambda_[c].detach().double().cpu().sort().values
    ax.bar(
        range(len(values)),
        values.tolist(),
        color=["tab:red" if v < 0 else "tab:blue" for v in values.tolist()],
        width=1.0,
    )
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("eigenvalue index (sorted)")
    ax.set_ylabel("λ")
    ax.set_title(f"class {c}: spectrum of Q_c")
    positive, negative = signed_top(found.lambda_[c], n)
    for j, index in enumerate(positive + negative):
        image = found.images[c, index]
        if reference is not None:
            image = orient(image, reference)
        _show(fig.add_subplot(grid[1, j]), image, shape, f"λ={found.lambda_[c, index].item():+.2f}")
    return save_figure(fig, path)


def plot_truncation(result: TruncationAccuracy, path: PathLike, title: str = "truncation") -> Path:
    """Test accuracy against eigencomponents kept per class, with the full model's (Fig. 5B)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(result.ks, result.accuracy, "o-", label="top-k eigencomponents per class")
    ax.axhline(result.full, color="black", linestyle="--", label=f"full model ({result.full:.3f})")
    ax.set_xscale("symlog", base=2, linthresh=1)
    ax.set_xlim(-0.2, max(result.ks) * 1.15)
    ax.set_xlabel("eigencomponents kept per class (by |λ|)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_mask_curves(curves: Mapping[str, MaskCurve], mean_norm: float, path: PathLike) -> Path:
    """Rate of misclassification into the target and accuracy against mask norm, per method, with the permuted
    baselines; the dotted line marks a quarter of the mean image norm."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (method, curve), color in zip(curves.items(), COLORS, strict=False):
        left.plot(curve.norms, curve.rate, "o-", color=color, label=f"{method} mask")
        left.plot(curve.norms, curve.baseline_rate, "x--", color=color, label=f"{method}, pixels permuted")
        right.plot(curve.norms, curve.accuracy, "o-", color=color, label=f"{method} mask")
        right.plot(curve.norms, curve.baseline_accuracy, "x--", color=color, label=f"{method}, pixels permuted")
    for ax, label in ((left, "share of other-class images sent to the target"), (right, "accuracy on masked images")):
        ax.axvline(mean_norm / 4, color="gray", linestyle=":", label="¼ mean image norm")
        ax.set_xlabel("mask L2 norm")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.02)
    left.legend(fontsize=7)
    left.set_title("adversarial masks, mean over targets")
    return save_figure(fig, path)


def plot_masks(
    masks: torch.Tensor,
    examples: torch.Tensor,
    predictions: list[int],
    shape: tuple[int, int],
    path: PathLike,
    method: str,
) -> Path:
    """Row 1: the mask of each target [n, n_pixels]; row 2: an image of another class with it added and the model's
    prediction."""
    plt = pyplot()
    n = masks.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3.5))
    for t in range(n):
        _show(axes[0, t], masks[t], shape, f"mask → {t}")
        _show(axes[1, t], examples[t], shape, f"predicted {predictions[t]}", signed=False)
    fig.suptitle(f"{method} masks", fontsize=10)
    return save_figure(fig, path)


def plot_noise_sweep(sweep: NoiseSweep, path: PathLike) -> Path:
    """Test accuracy, outlier energy and effective rank against the input-noise std (Fig. 4)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    std = sweep.noise_std
    axes[0].plot(std, sweep.test_accuracy, "o-", label="test")
    axes[0].plot(std, sweep.train_accuracy, "s--", label="train")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8)
    axes[1].plot(std, [s.outlier_energy for s in sweep.stats], "o-", color="tab:red")
    axes[1].set_ylabel("outlier energy of top-4 eigen-images")
    axes[2].plot(std, [s.effective_rank for s in sweep.stats], "o-", color="tab:green")
    axes[2].set_ylabel("effective rank of Q_c (mean)")
    for ax in axes:
        ax.set_xlabel("input noise std")
    return save_figure(fig, path)


def plot_explanation(
    explanation: InputExplanation,
    pixels: torch.Tensor,
    shape: tuple[int, int],
    path: PathLike,
    classes: int = 3,
    components: int = 4,
) -> Path:
    """The image; for its top classes, the largest |contributions| lambda (v . e)^2 as bars and their eigen-images."""
    plt = pyplot()
    top = explanation.logits.argsort(descending=True)[:classes].tolist()
    fig = plt.figure(figsize=(1.6 * (components + 2), 1.9 * classes + 0.4))
    grid = fig.add_gridspec(classes, components + 2, width_ratios=[1.2, 2] + [1] * components)
    _show(fig.add_subplot(grid[:, 0]), pixels, shape, "input", signed=False)
    for row, c in enumerate(top):
        parts = explanation.contributions[c]
        order = parts.abs().argsort(descending=True)[:components].tolist()
        ax = fig.add_subplot(grid[row, 1])
        values = [parts[i].item() for i in order]
        ax.barh(range(len(order))[::-1], values, color=["tab:blue" if v > 0 else "tab:red" for v in values])
        ax.set_yticks([])
        ax.set_title(f"class {c}: logit {explanation.logits[c].item():.2f}", fontsize=8)
        ax.axvline(0, color="black", linewidth=0.5)
        for j, i in enumerate(order):
            _show(
                fig.add_subplot(grid[row, 2 + j]),
                explanation.images[c, i],
                shape,
                f"λ={explanation.lambda_[c, i].item():+.2f}\n→ {parts[i].item():+.2f}",
            )
    return save_figure(fig, path)


def plot_outlier_comparison(
    models: Mapping[str, EigenImages],
    rare: torch.Tensor,
    shape: tuple[int, int],
    path: PathLike,
    reference: torch.Tensor | None = None,
) -> Path:
    """One row per model, one column per class: the top eigen-image (by |lambda|), the rarely inked pixels
    (`rare` [n_pixels]) marked with dots, and the share of the image's squared norm on them (Fig. 4)."""
    plt = pyplot()
    n = next(iter(models.values())).lambda_.shape[0]
    fig, axes = plt.subplots(len(models), n, figsize=(1.3 * n, 1.6 * len(models) + 0.4), squeeze=False)
    rows, cols = torch.nonzero(rare.reshape(shape), as_tuple=True)
    for r, (name, found) in enumerate(models.items()):
        for c in range(n):
            image = found.images[c, 0]
            if reference is not None:
                image = orient(image, reference)
            share = (image[rare].square().sum() / image.square().sum()).item()
            _show(axes[r, c], image, shape, f"{c}: {share:.0%} on rare")
            axes[r, c].scatter(cols.tolist(), rows.tolist(), s=3, c="black", marker=".")
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("top eigen-image per class; dots: pixels inked < 5% of the time in training", fontsize=9)
    return save_figure(fig, path)
