"""Defaults for the shipped `ts-synthetic-2l`: its held-out token set (a file beside this module, written by
scripts/dashboard_tokens.py), its shipped SAEs, and the directions shown when none are asked for: the contrast
directions of the most frequent tokens of the token set, and the live SAE output features of largest |lambda|."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from hooked_bilinear.analysis.features import rank_output_features
from hooked_bilinear.analysis.readout import mlp_factors
from hooked_bilinear.errors import DashboardError

SHIPPED_MODEL = "ts-synthetic-2l"
HELDOUT_FILE = Path(__file__).resolve().parent / "ts-synthetic-2l-heldout.safetensors"
HELDOUT_STORIES, HELDOUT_SEED = 200, 3
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
