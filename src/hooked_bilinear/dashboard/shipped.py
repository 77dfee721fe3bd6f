"""Defaults for the shipped `ts-synthetic-2l`: its held-out token set (a file beside this module, written by
scripts/dashboard_tokens.py), its shipped SAEs, and the directions shown when none are asked for: the contrast
directions of the most frequent tokens of the token set, and the live SAE output features of largest |lambda|."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from beartype import beartype
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


@beartype
def heldout_tokens() -> torch.Tensor:
    """The shipped model's held-out token set.

    Returns:
        Token ids [108, 128] (long): 200 synthetic stories of seed 3, packed as in training.
    """
    return load_file(HELDOUT_FILE)["tokens"].long()


@beartype
def shipped_saes(model_name: str, layer: int) -> tuple[Any, Any]:
    """The SAEs shipped for a model's layer.

    Args:
        model_name: e.g. "ts-synthetic-2l".
        layer: the MLP layer.

    Returns:
        (input SAE on blocks.{layer}.mlp.hook_in, output SAE on hook_out), None for each that is not shipped.
    """
    from hooked_bilinear import sae

    names = set(sae.shipped())
    found = []
    for side in ("in", "out"):
        name = f"{model_name}/blocks.{layer}.mlp.hook_{side}"
        found.append(sae.load(name) if name in names else None)
    return found[0], found[1]


@beartype
def frequent_tokens(model: Any, tokens: torch.Tensor, n: int) -> list[int]:
    """The most frequent tokens of a token set.

    Args:
        model: the bridge (its tokenizer's special tokens are left out).
        tokens: token ids [n_seq, pos].
        n: how many.

    Returns:
        Up to n token ids, most frequent first.
    """
    special = set(getattr(getattr(model, "tokenizer", None), "all_special_ids", []) or [])
    counts = torch.bincount(tokens.reshape(-1), minlength=model.cfg.d_vocab)
    order = counts.argsort(descending=True, stable=True).tolist()
    return [i for i in order if i not in special and counts[i] > 0][:n]


@beartype
def live_features(model: Any, layer: int, sae_out: Any, tokens: torch.Tensor, n: int) -> list[int]:
    """Output features worth a look: those of largest |lambda| (`rank_output_features`) among the live ones.

    Args:
        model: the bridge.
        layer: the MLP layer sae_out reads the output of.
        sae_out: an SAE on blocks.{layer}.mlp.hook_out.
        tokens: token ids [n_seq, pos].
        n: how many.

    Returns:
        Up to n feature ids active at >= 0.5% of the token set's positions, largest top |lambda| first.

    Raises:
        DashboardError: no feature is live on the token set.
    """
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


@beartype
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
    """`write_dashboard` of the shipped model with its defaults (what the CLI does with only MODEL, --layer, --out).

    Args:
        model: the shipped ts-synthetic-2l bridge.
        layer: 0 or 1.
        path: the HTML file to write.
        n_tokens: the most frequent tokens of the held-out stories, shown as contrast directions.
        n_features: live output features of the shipped output SAE, with the input SAE's interactions.
        k: eigenvectors per direction.
        n_contexts: top and bottom contexts per eigenvector.
        progress: tqdm bars.

    Returns:
        The written file's path, size, generation time and number of directions.
    """
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
