"""Token datasets for fine-tuning: loaded, checked against the vocabulary, packed into sequences served in a seeded
order, so that a batch is a function of (seed, step) alone: resumable mid-epoch, and the same whatever the number of
processes (each rank reads only its rows of the global batch)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Int

from hooked_bilinear.errors import DatasetError

TokenSource = torch.Tensor | np.ndarray | list | str | os.PathLike
TOKEN_SUFFIXES = (".pt", ".npy")


def load_tokens(source: TokenSource) -> Int[torch.Tensor, " n"]:
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
        raise DatasetError(
            f"tokens must be integers in a tensor, array or list of equal-length rows ({error})."
        ) from error
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.is_complex():
        raise DatasetError(f"tokens must be integers, got dtype {tokens.dtype}.")
    if tokens.ndim not in (1, 2):
        raise DatasetError(f"tokens must be 1-D (a stream) or 2-D (rows), got shape {tuple(tokens.shape)}.")
    return tokens.reshape(-1).long()


def check_tokens(tokens: torch.Tensor | np.ndarray, vocab_size: int, seq_len: int) -> None:
    """DatasetError if a token lies outside [0, vocab_size) or the stream is shorter than one sequence."""
    array = tokens.numpy() if isinstance(tokens, torch.Tensor) else tokens
    for start in range(0, len(array), 1 << 24):  # in chunks: a memory-mapped corpus need not fit in memory twice
        chunk = np.asarray(array[start : start + (1 << 24)])
        bad = np.flatnonzero((chunk < 0) | (chunk >= vocab_size))
        if len(bad):
            index = start + int(bad[0])
            raise DatasetError(
                f"tokens lie outside the model's vocabulary [0, {vocab_size}); the first is {int(array[index])} "
                f"at position {index}. Tokenize the dataset with the model's own tokenizer."
            )
    if len(array) < seq_len + 1:
        raise DatasetError(f"the dataset holds {len(array)} tokens, fewer than one sequence of {seq_len + 1}.")


class PackedSequences:
    """A token stream cut into sequences of `seq_len + 1` tokens (consecutive ones share one token: inputs and
    targets), served epoch after epoch, each epoch in its own seeded random order.

    The global batch of `step` is sequences [step * batch_size, (step + 1) * batch_size) of that endless stream, so it
    depends on (seed, step, batch_size) only; `rows` picks a rank's share of it."""

    def __init__(self, tokens: torch.Tensor | np.ndarray, seq_len: int, seed: int) -> None:
        self.tokens = tokens.numpy() if isinstance(tokens, torch.Tensor) else tokens
        self.seq_len, self.seed = seq_len, seed
        self.n_sequences = (len(self.tokens) - 1) // seq_len
        if self.n_sequences < 1:
            raise DatasetError(
                f"the dataset holds {len(self.tokens)} tokens, fewer than one sequence of {seq_len + 1}."
            )
        self._orders: dict[int, torch.Tensor] = {}

    def order(self, epoch: int) -> Int[torch.Tensor, " n"]:
        """The permutation of the sequences in `epoch`."""
        if epoch not in self._orders:
            self._orders = {
                epoch: torch.randperm(
                    self.n_sequences, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                )
            }
        return self._orders[epoch]

    def sequence_ids(self, step: int, batch_size: int, rows: range | None = None) -> list[int]:
        """Which sequences make up `rows` (default: all) of the global batch of `step`."""
        ids = []
        for row in rows if rows is not None else range(batch_size):
            k = step * batch_size + row
            ids.append(int(self.order(k // self.n_sequences)[k % self.n_sequences]))
        return ids

    def batch(self, step: int, batch_size: int, rows: range | None = None) -> Int[torch.Tensor, "b s1"]:
        """Token ids [len(rows), seq_len + 1] of `rows` of the global batch of `step`."""
        s = self.seq_len
        return torch.from_numpy(
            np.stack(
                [
                    np.asarray(self.tokens[i * s : i * s + s + 1], dtype=np.int64)
                    for i in self.sequence_ids(step, batch_size, rows)
                ]
            )
        )
