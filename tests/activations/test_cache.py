"""The disk cache: what it reads back is what the store streamed, in a seeded shuffled order; an interrupted write
resumes to the same files (a half-written shard is never read); a cache of another model or hook is refused, and
nothing is overwritten."""

from __future__ import annotations

import json
import random

import pytest
import torch

from hooked_bilinear.activations import cache as cache_module
from hooked_bilinear.activations.cache import ActivationCache, finish_cache, write_cache
from hooked_bilinear.activations.store import ActivationStore
from hooked_bilinear.errors import SAEError

HOOKS = ["blocks.0.mlp.hook_in", "blocks.1.mlp.hook_out"]


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_written_and_read_back(model, rows, tmp_path) -> None:
    store = ActivationStore(model, rows, HOOKS, model_batch_size=2)
    write_cache(store, tmp_path / "c", shard_sequences=4)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "manifest.json",
        *(f"shard-{i:06d}.safetensors" for i in range(3)),
    ]
    cache = ActivationCache(tmp_path / "c", model=model, hook_names=HOOKS[1], buffer_size=1000, seed=7)
    assert cache.n_rows == rows.numel() and cache.hook_names == [HOOKS[1]]
    reference = torch.cat([b.activations[HOOKS[1]] for b in store.batches(4096, shuffle=False)])
    orders = []
    for _ in range(2):
        batches = list(cache.batches(256))
        index = torch.cat([b.index for b in batches])
        assert torch.equal(index.sort().values, torch.arange(rows.numel()))
        assert torch.equal(torch.cat([b.activations[HOOKS[1]] for b in batches]), reference[index])
        orders.append(index)
    assert torch.equal(orders[0], orders[1])
    assert not torch.equal(orders[0][:512].sort().values, torch.arange(512))  # shards and rows mixed
    in_order = torch.cat([b.index for b in cache.batches(256, shuffle=False)])
    assert torch.equal(in_order, torch.arange(rows.numel()))


@pytest.mark.parametrize("trial", range(3))  # scripts/interrupt_streaming.py runs many more
def test_an_interrupted_write_resumes_to_the_same_files(model, rows, tmp_path, monkeypatch, trial) -> None:
    store = ActivationStore(model, rows, HOOKS, model_batch_size=2)
    write_cache(store, tmp_path / "whole", shard_sequences=2)
    real = cache_module._write_shard
    crash = random.Random(trial).randrange(6)
    calls = []

    def crashing(tensors, path):  # dies half-way through writing a shard
        calls.append(path)
        if len(calls) == crash + 1:
            with open(path, "wb") as f:
                f.write(b"half a shard")
            raise KeyboardInterrupt
        real(tensors, path)

    monkeypatch.setattr(cache_module, "_write_shard", crashing)
    with pytest.raises(KeyboardInterrupt):
        write_cache(store, tmp_path / "resumed", shard_sequences=2)
    with pytest.raises(SAEError, match="no finished activation cache"):
        ActivationCache(tmp_path / "resumed")
    monkeypatch.setattr(cache_module, "_write_shard", real)
    write_cache(store, tmp_path / "resumed", shard_sequences=2)
    assert files(tmp_path / "resumed") == files(tmp_path / "whole")


def test_a_cache_of_another_model_or_hook_is_refused_and_kept(model, rows, tmp_path) -> None:
    store = ActivationStore(model, rows, HOOKS[0])
    write_cache(store, tmp_path / "c", shard_sequences=32)
    before = files(tmp_path / "c")
    with pytest.raises(SAEError, match="holds hooks \\['blocks.0.mlp.hook_in'\\], not 'blocks.1.mlp.hook_out'"):
        ActivationCache(tmp_path / "c", model=model, hook_names=HOOKS[1])
    other = ActivationStore(model, rows, HOOKS[1])
    with pytest.raises(SAEError, match="other settings: hooks"):
        write_cache(other, tmp_path / "c", shard_sequences=32)
    with pytest.raises(SAEError, match="other settings: tokens"):
        write_cache(ActivationStore(model, rows.flip(0), HOOKS[0]), tmp_path / "c", shard_sequences=32)
    parameter = model.blocks[1].mlp.out.weight if hasattr(model.blocks[1].mlp, "out") else next(model.parameters())
    with torch.no_grad():
        parameter.add_(1.0)
        try:
            with pytest.raises(SAEError, match="written from another model"):
                ActivationCache(tmp_path / "c", model=model)
        finally:
            parameter.sub_(1.0)
    assert files(tmp_path / "c") == before
    write_cache(other, tmp_path / "c", shard_sequences=32, overwrite=True)
    assert ActivationCache(tmp_path / "c", model=model).hook_names == [HOOKS[1]]
    with pytest.raises(SAEError, match="multiple of the store's model_batch_size"):
        write_cache(store, tmp_path / "d", shard_sequences=33)
    assert not (tmp_path / "d").exists()


def test_shards_written_per_rank_merge_to_the_one_process_cache(model, rows, tmp_path) -> None:
    store = ActivationStore(model, rows, HOOKS, model_batch_size=2)
    write_cache(store, tmp_path / "one", shard_sequences=2)
    for rank in (1, 0):  # each rank its own shards (i = rank mod 2) and manifest part, in any order
        write_cache(store, tmp_path / "two", shard_sequences=2, rank=rank, world_size=2)
    with pytest.raises(SAEError, match="no finished activation cache"):
        ActivationCache(tmp_path / "two")
    finish_cache(tmp_path / "two", world_size=2)
    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert one.keys() == two.keys()
    assert json.loads(one.pop("manifest.json")) == json.loads(two.pop("manifest.json"))
    assert one == two
