"""Argument checks shared by the model-level analyses: a layer that exists, token ids inside the vocabulary.

Each error names the argument and what it accepts, instead of the IndexError torch raises deep inside a forward pass."""

from __future__ import annotations

from typing import Any

import torch


def check_layer(model: Any, layer: int) -> None:
    """IndexError naming `layer` unless `model.blocks[layer]` exists (negative indices are refused too)."""
    n = len(model.blocks)
    if not 0 <= layer < n:
        raise IndexError(f"layer={layer} does not exist: the model has layers 0..{n - 1}.")


def check_token_ids(model: Any, tokens: torch.Tensor) -> None:
    """TypeError / ValueError naming `tokens` unless they are integer ids inside the model's vocabulary."""
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be integer token ids (e.g. model.to_tokens(text)), got dtype {tokens.dtype}.")
    vocab = getattr(getattr(model, "cfg", None), "d_vocab", None)
    if isinstance(vocab, int) and tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocab):
        raise ValueError(
            f"tokens must lie in [0, {vocab}) (the model's vocabulary); got ids from {tokens.min().item()} to "
            f"{tokens.max().item()}."
        )
