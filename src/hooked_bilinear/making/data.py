"""Token datasets for fine-tuning: checked against the vocabulary, cut into deterministic random windows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from jaxtyping import Int

from hooked_bilinear.errors import DatasetError

TokenSource = Union[torch.Tensor, np.ndarray, list, str, os.PathLike]


def load_tokens(source: TokenSource) -> Int[torch.Tensor, "n"]:
    """A flat int64 token stream from a tensor / array / list (1-D, or 2-D rows concatenated) or a .pt / .npy file."""
    data: Any = source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DatasetError(f"token file {path} does not exist.")
        if path.suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        elif path.suffix == ".pt":
            data = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise DatasetError(f"token file {path} must be a .pt (a LongTensor) or .npy (an integer array) file.")
    try:
        tokens = torch.as_tensor(np.asarray(data) if isinstance(data, list) else data)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"tokens must be integers in a tensor, array or list of equal-length rows ({error}).") from error
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.is_complex():
        raise DatasetError(f"tokens must be integers, got dtype {tokens.dtype}.")
    if tokens.ndim not in (1, 2):
        raise DatasetError(f"tokens must be 1-D (a stream) or 2-D (rows), got shape {tuple(tokens.shape)}.")
    return tokens.reshape(-1).long()


def check_tokens(tokens: torch.Tensor, vocab_size: int, seq_len: int) -> None:
    """DatasetError if a token lies outside [0, vocab_size) or the stream is shorter than one window."""
    bad = ((tokens < 0) | (tokens >= vocab_size)).nonzero()
    if len(bad):
        index = int(bad[0, 0])
        raise DatasetError(
            f"{len(bad)} tokens lie outside the model's vocabulary [0, {vocab_size}); the first is {int(tokens[index])} "
            f"at position {index}. Tokenize the dataset with the model's own tokenizer."
        )
    if len(tokens) < seq_len + 1:
        raise DatasetError(f"the dataset holds {len(tokens)} tokens, fewer than one window of {seq_len + 1}.")


def batch_at(tokens: torch.Tensor, step: int, batch_size: int, seq_len: int, seed: int) -> Int[torch.Tensor, "b s1"]:
    """Windows [batch_size, seq_len + 1] for `step`: a function of (seed, step) alone, so a resumed run sees the
    same batches as an uninterrupted one."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(tokens) - seq_len, (batch_size,), generator=generator)
    return torch.stack([tokens[s : s + seq_len + 1] for s in starts.tolist()])
