"""Pictures of the analyses, saved as PNG: an eigenvalue spectrum, a top-token table, a truncation curve."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from hooked_bilinear.analysis.readout import TokenTable
from hooked_bilinear.analysis.truncation import TruncationCurve

PathLike = Union[str, Path]


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


def plot_token_table(table: TokenTable, path: PathLike, labels: Optional[list] = None, title: str = "") -> Path:
    """One column per vector: its top tokens (positive scores) above its bottom tokens (negative scores)."""
    plt = pyplot()
    n, k = len(table.top_tokens), len(table.top_tokens[0])
    fig, ax = plt.subplots(figsize=(2.2 * n + 0.5, 0.32 * (2 * k + 2) + 0.6))
    ax.axis("off")
    rows = [[f"{t} {s:+.2f}" for t, s in zip(col, scores)] for col, scores in zip(table.top_tokens, table.top_scores.tolist())]
    rows_bottom = [[f"{t} {s:+.2f}" for t, s in zip(col, scores)] for col, scores in zip(table.bottom_tokens, table.bottom_scores.tolist())]
    cells = [[rows[j][i] for j in range(n)] for i in range(k)] + [["..."] * n] + [[rows_bottom[j][i] for j in range(n)] for i in range(k)]
    header = labels or [f"v{j}" for j in range(n)]
    ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="left").scale(1, 1.2)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def plot_truncation_curve(
    curve: TruncationCurve, path: PathLike, title: str = "truncation faithfulness",
    parts: Sequence[TruncationCurve] = (),
) -> Path:
    """Loss (left axis, with the untruncated baseline) and output correlation (right axis) against kept components;
    `parts` (e.g. the curves of disjoint halves of the text) are drawn faintly, to show how stable the curve is."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, part in enumerate(parts):
        ax.plot(part.ks, part.loss, "-", color="tab:blue", alpha=0.35, linewidth=1,
                label="loss, each disjoint part" if i == 0 else None)
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
