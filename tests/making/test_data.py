"""Packed sequences: consecutive slices of the stream, each epoch a seeded permutation, a batch a function of
(seed, step) alone, split into ranks' rows that make up the global batch whatever the number of processes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hooked_bilinear.errors import DatasetError
from hooked_bilinear.making.data import PackedSequences, check_tokens

TOKENS = torch.arange(1000) % 97


def test_sequences_are_consecutive_slices_sharing_one_token():
    data = PackedSequences(TOKENS, seq_len=16, seed=0)
    assert data.n_sequences == (1000 - 1) // 16
    ids = data.sequence_ids(0, 8)
    batch = data.batch(0, 8)
    assert batch.shape == (8, 17) and batch.dtype == torch.int64
    for row, i in zip(batch, ids):
        assert torch.equal(row, TOKENS[i * 16 : i * 16 + 17])


def test_each_epoch_is_a_permutation_in_its_own_order():
    data = PackedSequences(TOKENS, seq_len=16, seed=3)
    n = data.n_sequences  # 62: batches of 4 straddle the epoch boundary
    stream = [i for step in range(2 * n // 4) for i in data.sequence_ids(step, 4)]
    assert sorted(stream[:n]) == list(range(n)) and sorted(stream[n : 2 * n]) == list(range(n))
    assert stream[:n] != stream[n : 2 * n] and stream[:n] != list(range(n))
    assert PackedSequences(TOKENS, 16, seed=4).sequence_ids(0, 8) != data.sequence_ids(0, 8)


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_batches_depend_on_seed_and_step_only_and_ranks_share_them(world_size):
    fresh = PackedSequences(TOKENS.numpy().astype(np.int32), seq_len=16, seed=5)  # a memory-mapped corpus is int32
    used = PackedSequences(TOKENS, seq_len=16, seed=5)
    for step in range(40):
        used.batch(step, 8)
    local = 8 // world_size
    for step in (0, 7, 33):  # 33: a later epoch, as a run resumed mid-way reads it
        rows = [fresh.batch(step, 8, range(r * local, (r + 1) * local)) for r in range(world_size)]
        assert torch.equal(torch.cat(rows), used.batch(step, 8))


def test_bad_streams_are_refused():
    with pytest.raises(DatasetError, match="fewer than one sequence"):
        PackedSequences(TOKENS[:10], seq_len=16, seed=0)
    with pytest.raises(DatasetError, match="outside the model's vocabulary.*97 at position 5"):
        check_tokens(torch.tensor([1, 2, 3, 4, 5, 97, 1]), 97, 2)
