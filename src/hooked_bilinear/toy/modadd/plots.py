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


def plot_quadrature_points(reading: Any, path: PathLike, title: str = "") -> Path:
    """A ReLU model's units as quadrature points, one column per key frequency k, at the harmonic m whose integral
    is largest (|sum_n w_nm e^{i (chi_nm - 2 m phi_n)}| / (4 m^2 - 1), the even-spacing estimate of |J^_km|): top, each unit's input phase phi_n (the point) against its width alpha_n gamma_nm; bottom,
    its output phase chi_nm against 2 m phi_n (the quadrature identity wants chi = 2 m phi for odd m and
    2 m phi + pi for even m, where its integral is negative; both lines drawn, the wanted one solid).

    Args:
        reading: a `quadrature.UnitReading`.
        path: where to save the PNG.
        title: the figure's title.

    Returns:
        The saved path.
    """
    import math

    frequencies = list(reading.frequencies)
    fig, axes = pyplot().subplots(2, len(frequencies), figsize=(4.0 * len(frequencies), 6.4), squeeze=False)
    for column, k in enumerate(frequencies):
        units = reading.frequency == k
        widths = reading.alpha[units, None] * reading.gamma[units]  # [n_k, M]
        harmonic = torch.arange(1, widths.shape[1] + 1, dtype=torch.float64)
        turn = reading.chi[units] - 2 * harmonic[None, :] * reading.phi[units, None]
        coherent = ((widths * torch.cos(turn)).sum(0).pow(2) + (widths * torch.sin(turn)).sum(0).pow(2)).sqrt()
        m = int((coherent / (4 * harmonic**2 - 1)).argmax()) + 1
        phi, width = reading.phi[units], widths[:, m - 1]
        top, bottom = axes[0, column], axes[1, column]
        top.vlines(phi.tolist(), 0, width.tolist(), color="tab:blue", lw=0.8)
        top.plot(phi.tolist(), width.tolist(), ".", color="tab:blue", ms=3)
        top.set_xlim(-math.pi, math.pi)
        top.set_xlabel("input phase phi_n (quadrature point)")
        top.set_ylabel(f"width alpha_n gamma_n,{m}")
        top.set_title(f"k = {k}: {int(units.sum())} units, harmonic m = {m}", fontsize=9)
        wrap = torch.remainder(2 * m * phi + math.pi, 2 * math.pi) - math.pi
        chi = torch.remainder(reading.chi[units, m - 1] + math.pi, 2 * math.pi) - math.pi
        bottom.scatter(wrap.tolist(), chi.tolist(), s=(4 + 60 * width / width.max()).tolist(), alpha=0.6)
        wanted = 0.0 if m % 2 else math.pi
        for offset in (0.0, math.pi):
            style = "-" if offset == wanted else ":"
            for shift in (offset, offset - 2 * math.pi):  # y = x + offset, wrapped into [-pi, pi]
                bottom.plot([-math.pi, math.pi], [-math.pi + shift, math.pi + shift], style, color="grey", lw=0.8)
        bottom.set_ylim(-math.pi, math.pi)
        bottom.set_xlabel(f"2 m phi_n (mod 2 pi), m = {m}")
        bottom.set_ylabel("output phase chi_n,m")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
