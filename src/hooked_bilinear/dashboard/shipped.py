"""Defaults for the shipped `ts-synthetic-2l`: its held-out token set (a file beside this module, written by
scripts/dashboard_tokens.py), its shipped SAEs, and the directions shown when none are asked for: the contrast
directions of the most frequent tokens of the token set, and the live SAE output features of largest |lambda|."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from hooked_bilinear.analysis.features import rank_output_features
from hooked_bilinear.analysis.readout import mlp_factors
from hooked_bilinear.dashboard.build import DashboardFile, write_dashboard
from hooked_bilinear.errors import DashboardError

SHIPPED_MODEL = "ts-synthetic-2l"
HELDOUT_FILE = Path(__file__).resolve().parent / "ts-synthetic-2l-heldout.safetensors"
HELDOUT_STORIES, HELDOUT_SEED = 200, 3
HELDOUT_DESCRIPTION = "held-out synthetic stories (seed 3)"
MIN_ACTIVE = 0.005  # a feature counts as live when active at this share of the token set's positions


def heldout_tokens() -> torch.Tensor:
    """The shipped model's held-out token set [n_seq, 128] (long)."""
    return load_file(HELDOUT_FILE)["tokens"].long()


def shipped_saes(model_name: str, layer: int) -> tuple[Any, Any]:
    """(input SAE, output SAE) shipped for the model's layer, None for each that is not shipped."""
    from hooked_bilinear import sae

    names = set(sae.shipped())
    found = []
    for side in ("in", "out"):
        name = f"{model_name}/blocks.{layer}.mlp.hook_{side}"
        found.append(sae.load(name) if name in names else None)
    return found[0], found[1]


def frequent_tokens(model: Any, tokens: torch.Tensor, n: int) -> list[int]:
    """The n most frequent token ids of the token set, special tokens left out."""
    special = set(getattr(getattr(model, "tokenizer", None), "all_special_ids", []) or [])
    counts = torch.bincount(tokens.reshape(-1), minlength=model.cfg.d_vocab)
    order = counts.argsort(descending=True, stable=True).tolist()
    return [i for i in order if i not in special and counts[i] > 0][:n]


def live_features(model: Any, layer: int, sae_out: Any, tokens: torch.Tensor, n: int) -> list[int]:
    """The n output features of largest |lambda| (`rank_output_features`) among those active at >= 0.5% of the
    token set's positions."""
    from hooked_bilinear.analysis.features import feature_activations

    active = (feature_activations(model, sae_out, tokens) > 0).double().mean((0, 1))
    live = (active >= MIN_ACTIVE).nonzero()[:, 0]
    if len(live) == 0:
        raise DashboardError(
            f"no feature of the output SAE is active at {MIN_ACTIVE:.1%} of the token set's positions: pass "
            "features= explicitly, or a larger token set."
        )
    ranking = rank_output_features(mlp_factors(model, layer), sae_out, features=live, by="top_eigenvalue")
    return ranking.features[:n].tolist()


def write_shipped_dashboard(
    model: Any,
    layer: int,
    path: str | os.PathLike,
    *,
    n_tokens: int = 32,
    n_features: int = 16,
    k: int = 8,
    n_contexts: int = 10,
    progress: bool = True,
) -> DashboardFile:
    """`write_dashboard` of the shipped model with its defaults: the held-out stories, the shipped SAEs of the
    layer, the `n_tokens` most frequent tokens (as contrasts) and `n_features` live output features."""
    tokens = heldout_tokens()
    sae_in, sae_out = shipped_saes(SHIPPED_MODEL, layer)
    return write_dashboard(
        model,
        layer,
        tokens,
        path,
        directions=frequent_tokens(model, tokens, n_tokens),
        features=live_features(model, layer, sae_out, tokens, n_features) if sae_out is not None else None,
        sae_in=sae_in,
        sae_out=sae_out,
        k=k,
        n_contexts=n_contexts,
        token_set=HELDOUT_DESCRIPTION,
        progress=progress,
    )
