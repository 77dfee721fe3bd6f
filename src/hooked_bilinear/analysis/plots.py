"""Pictures of the analyses, saved as PNG: an eigenvalue spectrum, a top-token table, a truncation curve."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from hooked_bilinear.analysis.readout import TokenTable
from hooked_bilinear.analysis.truncation import TruncationCurve

PathLike = str | Path


def pyplot():  # type: ignore[no-untyped-def]
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: PathLike) -> Path:  # type: ignore[no-untyped-def]
    """Write a figure as PNG (folders created), close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path


def show_in_notebook(*paths: PathLike) -> None:
    """Display PNGs inline when running in a Jupyter kernel (the tutorials, executed as notebooks on the docs site);
    anywhere else, nothing (the files are on disk).

    Args:
        *paths: PNG files, e.g. what the plot functions return.
    """
    if "ipykernel" not in sys.modules:
        return
    from IPython.display import Image, display

    for path in paths:
        display(Image(filename=str(path)))


def plot_spectrum(lambda_: torch.Tensor, path: PathLike, title: str = "eigenvalues of Q_u") -> Path:
    """Eigenvalues [d] sorted by value (a stem plot: the few large |lambda| at either end carry the output)."""
    plt = pyplot()
    values = lambda_.detach().double().cpu().sort().values
    fig, ax = plt.subplots(figsize=(7, 3.2))
    colors = ["tab:red" if x < 0 else "tab:blue" for x in values.tolist()]
    ax.bar(range(len(values)), values.tolist(), color=colors, width=1.0)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("eigenvalue index (sorted)")
    ax.set_ylabel("lambda")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_token_table(table: TokenTable, path: PathLike, labels: list | None = None, title: str = "") -> Path:
    """One column per vector: its top tokens (positive scores) above its bottom tokens (negative scores)."""
    plt = pyplot()
    n, k = len(table.top_tokens), len(table.top_tokens[0])
    fig, ax = plt.subplots(figsize=(2.2 * n + 0.5, 0.32 * (2 * k + 2) + 0.6))
    ax.axis("off")
    rows = [
        [f"{t} {s:+.2f}" for t, s in zip(col, scores)]
        for col, scores in zip(table.top_tokens, table.top_scores.tolist())
    ]
    rows_bottom = [
        [f"{t} {s:+.2f}" for t, s in zip(col, scores)]
        for col, scores in zip(table.bottom_tokens, table.bottom_scores.tolist())
    ]
    cells = (
        [[rows[j][i] for j in range(n)] for i in range(k)]
        + [["..."] * n]
        + [[rows_bottom[j][i] for j in range(n)] for i in range(k)]
    )
    header = labels or [f"v{j}" for j in range(n)]
    ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="left").scale(1, 1.2)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def plot_truncation_curve(
    curve: TruncationCurve,
    path: PathLike,
    title: str = "truncation faithfulness",
    parts: Sequence[TruncationCurve] = (),
) -> Path:
    """Loss (left axis, with the untruncated baseline) and output correlation (right axis) against kept components;
    `parts` (e.g. the curves of disjoint halves of the text) are drawn faintly, to show how stable the curve is."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, part in enumerate(parts):
        ax.plot(
            part.ks,
            part.loss,
            "-",
            color="tab:blue",
            alpha=0.35,
            linewidth=1,
            label="loss, each disjoint part" if i == 0 else None,
        )
    ax.plot(curve.ks, curve.loss, "o-", color="tab:blue", label="loss, truncated MLP")
    ax.axhline(curve.baseline_loss, color="tab:blue", linestyle="--", label="loss, original")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("eigencomponents kept per output direction")
    ax.set_ylabel("loss (nats/token)")
    twin = ax.twinx()
    twin.plot(curve.ks, curve.correlation, "s-", color="tab:orange", label="output correlation")
    twin.set_ylabel("corr(truncated, original) MLP output")
    twin.set_ylim(min(0.0, min(curve.correlation)), 1.02)
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_feature_interactions(
    interactions: torch.Tensor,
    path: PathLike,
    features: list | None = None,
    labels: list | None = None,
    title: str = "feature interactions D Q_u D^T",
) -> Path:
    """Heat map of an interaction matrix restricted to `features` (all when None), symmetric colour scale."""
    plt = pyplot()
    M = interactions.detach().double().cpu()
    if features is not None:
        M = M[features][:, features]
    limit = M.abs().max().item() or 1.0
    fig, ax = plt.subplots(figsize=(0.45 * len(M) + 2.5, 0.45 * len(M) + 1.5))
    image = ax.imshow(M.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ticks = labels or [str(f) for f in (features if features is not None else range(len(M)))]
    ax.set_xticks(range(len(M)), ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(len(M)), ticks, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_self_cross(
    interactions: torch.Tensor, random_spectrum: torch.Tensor, path: PathLike, title: str = "self vs cross interactions"
) -> Path:
    """Fig. 27's pair of panels: histograms of the diagonal (self) and off-diagonal (cross) entries of an interaction
    matrix, and its sorted spectrum next to that of a random symmetric matrix of the same size and entry scale."""
    from hooked_bilinear.analysis.features import self_and_cross

    plt = pyplot()
    diagonal, cross = self_and_cross(interactions.detach().double().cpu())
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    bins = torch.linspace(min(diagonal.min(), cross.min()).item(), max(diagonal.max(), cross.max()).item(), 60).numpy()
    left.hist(cross.numpy(), bins=bins, alpha=0.6, density=True, label=f"cross ({len(cross)})")
    left.hist(diagonal.numpy(), bins=bins, alpha=0.6, density=True, label=f"self ({len(diagonal)})")
    left.set_yscale("log")
    left.set_xlabel("interaction")
    left.legend(fontsize=8)
    spectrum = torch.linalg.eigvalsh(interactions.detach().double().cpu()).sort().values
    right.plot(spectrum.numpy(), ".", markersize=3, label="interaction matrix")
    right.plot(
        random_spectrum.detach().double().cpu().sort().values.numpy(), ".", markersize=3, label="random symmetric"
    )
    right.set_xlabel("eigenvalue index (sorted)")
    right.set_ylabel("lambda")
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_eigen_approximation(
    ks: list, correlation: torch.Tensor, path: PathLike, title: str = "top-k eigen approximation of output features"
) -> Path:
    """Fig. 9: per-feature correlation [n_features, len(ks)] (NaN rows skipped) as box plots per k, mean marked."""
    plt = pyplot()
    data = correlation.detach().double().cpu()
    data = data[~torch.isnan(data).any(1)]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.boxplot([data[:, i].numpy() for i in range(len(ks))], showfliers=True)
    ax.set_xticks(range(1, len(ks) + 1), [str(k) for k in ks])
    ax.plot(range(1, len(ks) + 1), data.mean(0).numpy(), "o-", color="tab:red", label="mean")
    ax.set_xlabel("eigenvectors kept (k)")
    ax.set_ylabel("corr(approximation, activation) where active")
    ax.set_ylim(min(0.0, data.min().item() if len(data) else 0.0), 1.02)
    ax.legend(fontsize=8)
    ax.set_title(f"{title} ({len(data)} features)", fontsize=9)
    return save_figure(fig, path)
