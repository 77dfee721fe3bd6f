"""Pictures of the modular-addition study: Fourier spectra, logit tables, the proof-cost-vs-bound curve, training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float

from hooked_bilinear.analysis.plots import pyplot, save_figure
from hooked_bilinear.toy.modadd.certify import Certificate
from hooked_bilinear.toy.modadd.train import ModAddHistory

PathLike = str | Path


def plot_spectra(spectra: dict[str, Float[torch.Tensor, " k"]], path: PathLike, title: str = "") -> Path:
    """One bar chart per spectrum (share of energy per frequency k), weights and activations side by side."""
    fig, axes = pyplot().subplots(len(spectra), 1, figsize=(9, 1.9 * len(spectra)), sharex=True, squeeze=False)
    for ax, (name, spectrum) in zip(axes[:, 0], spectra.items()):
        ax.bar(range(len(spectrum)), spectrum.tolist(), color="tab:blue")
        ax.set_ylabel("share")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("frequency k (w_k = 2 pi k / p)")
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_logit_tables(tables: dict[str, Float[torch.Tensor, "p p"]], path: PathLike, title: str = "") -> Path:
    """Heatmaps over (a, b), e.g. the model's and the explanation's logit for one answer c."""
    fig, axes = pyplot().subplots(1, len(tables), figsize=(4.2 * len(tables), 3.8), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items()):
        image = ax.imshow(table.numpy(), cmap="RdBu_r", origin="lower")
        ax.set_xlabel("b")
        ax.set_ylabel("a")
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_certificate_curve(
    curve: list[Certificate],
    exact: Certificate,
    brute_force_flops: int,
    true_accuracy: float,
    path: PathLike,
    title: str = "",
) -> Path:
    """Certified accuracy (normalised by the true accuracy) against proof cost / brute-force cost, one point per
    number of kept frequencies: the compressed explanation alone, and with the exact fallback; the uncompressed
    proof (`exact`) as a star."""
    fig, ax = pyplot().subplots(figsize=(6.5, 4))
    for label, cost, accuracy, style in (
        ("compressed alone", lambda c: c.compressed_flops, lambda c: c.compressed_accuracy, "o-"),
        ("with exact fallback", lambda c: c.proof_flops, lambda c: c.certified_accuracy, "s--"),
    ):
        x = [cost(c) / brute_force_flops for c in curve]
        y = [accuracy(c) / true_accuracy for c in curve]
        ax.plot(x, y, style, label=label)
        for c, xi, yi in zip(curve, x, y):
            ax.annotate(str(len(c.frequencies)), (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.plot(
        [exact.proof_flops / brute_force_flops],
        [exact.certified_accuracy / true_accuracy],
        "*",
        markersize=12,
        color="black",
        label="exact circuit (uncompressed)",
    )
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="brute force cost")
    ax.set_xscale("log")
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10) if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("proof flops / brute-force flops")
    ax.set_ylabel("certified / true accuracy")
    ax.set_ylim(-0.03, 1.08)
    ax.legend(loc="center left", fontsize=8)
    ax.set_title(title or "proof cost vs bound (labels: kept frequencies)", fontsize=10)
    return save_figure(fig, path)


def plot_training(history: ModAddHistory, path: PathLike, title: str = "") -> Path:
    """Train and test loss (log scale) and accuracy per epoch."""
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(10, 3.5))
    left.plot(history.epochs, history.train_loss, label="train")
    left.plot(history.epochs, history.test_loss, label="test")
    left.set_yscale("log")
    left.set_ylabel("loss")
    right.plot(history.epochs, history.train_accuracy, label="train")
    right.plot(history.epochs, history.test_accuracy, label="test")
    right.set_ylabel("accuracy")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_cost_scaling(rows: list[dict[str, Any]], path: PathLike, title: str = "") -> Path:
    """Flops against p (log-log): brute force, the exact circuit (uncompressed proof), the compressed proof alone and
    with its exact fallback, with the model's parameter count for scale. `rows`: one dict per p with keys p, brute,
    compressed and optionally exact, compressed_multiplied, fallback and params (other keys are ignored)."""
    fig, ax = pyplot().subplots(figsize=(6.5, 4.2))
    ps = [row["p"] for row in rows]
    for key, label, style in (
        ("brute", "brute force (model on all p^2 inputs)", "s-"),
        ("exact", "exact circuit proof", "^--"),
        ("compressed", "compressed proof alone (residues + bounds)", "o-"),
        ("compressed_multiplied", "the same, R_X Y_K Z_K multiplied out", "v-"),
        ("fallback", "compressed proof + exact fallback", "d-."),
        ("params", "model parameters (count, not flops)", "x:"),
    ):
        points = [(row["p"], row[key]) for row in rows if row.get(key)]
        if points:
            ax.plot(*zip(*points), style, label=label)
    for power, anchor in ((2, "brute"), (3, "brute")):
        first = rows[0]
        ax.plot(
            ps, [first[anchor] * (p / first["p"]) ** power / 4 for p in ps], color="grey", linewidth=0.8, linestyle=":"
        )
        ax.annotate(
            f"~p^{power}", (ps[-1], first[anchor] * (ps[-1] / first["p"]) ** power / 4), fontsize=7, color="grey"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ps, [str(p) for p in ps])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("modulus p")
    ax.set_ylabel("floating-point operations")
    ax.legend(fontsize=8)
    ax.set_title(title or "proof cost vs brute force", fontsize=10)
    return save_figure(fig, path)
