"""The streaming store: the same activations as the in-memory path, one forward pass for several hooks and stopped
after the last, a seeded shuffle that hands out every activation exactly once, exclusions, resumable streams,
token sources, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hooked_bilinear.activations import store as store_module
from hooked_bilinear.activations.store import ActivationStore
from hooked_bilinear.errors import DatasetError, SAEError
from hooked_bilinear.making.corpus import Corpus, load_corpus
from hooked_bilinear.sae.train import cache_activations

HOOKS = ["blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out"]


def gather(batches, hook):
    batches = list(batches)
    return torch.cat([b.activations[hook] for b in batches]), torch.cat([b.index for b in batches])


def test_several_hooks_in_one_forward_that_stops_after_the_last(model, rows) -> None:
    later = []
    handle = model.blocks[1].mlp.hook_in.add_hook(lambda act, hook: later.append(1))
    try:
        store = ActivationStore(model, rows, HOOKS, model_batch_size=5)
        batches = list(store.batches(700, shuffle=False))
    finally:
        model.blocks[1].mlp.hook_in.remove_hooks()
    del handle
    assert later == []  # layer 1 never ran
    assert store.forward_passes == 3  # ceil(12 / 5): both hooks from the same passes
    for hook in HOOKS:
        got, index = gather(batches, hook)
        assert torch.equal(got, cache_activations(model, rows, hook, batch_size=5))
        assert torch.equal(index, torch.arange(rows.numel()))
    assert [len(b.index) for b in batches] == [700] * 2 + [rows.numel() - 1400]


def test_shuffle_is_seeded_and_hands_out_each_activation_once(model, rows) -> None:
    reference = cache_activations(model, rows, HOOKS[1])
    orders = []
    for seed in (3, 3, 4):
        store = ActivationStore(model, rows, HOOKS[1], model_batch_size=2, buffer_size=600, seed=seed)
        got, index = gather(store.batches(100), HOOKS[1])
        assert torch.equal(index.sort().values, torch.arange(rows.numel()))
        assert torch.equal(got, reference[index])
        orders.append(index)
    assert torch.equal(orders[0], orders[1]) and not torch.equal(orders[0], orders[2])
    first = orders[0][:100] // rows.shape[1]
    assert len(first.unique()) >= 3  # a batch mixes sequences (each forward batch holds 2)
    whole = ActivationStore(model, rows, HOOKS[1], buffer_size=10**6, seed=3)
    _, index = gather(whole.batches(64), HOOKS[1])
    assert torch.equal(index, torch.randperm(rows.numel(), generator=torch.Generator().manual_seed(3)))


def test_exclusions_dtype_and_drop_last(model, rows) -> None:
    tokens = rows.clone()
    tokens[:, 0] = model.tokenizer.bos_token_id
    tokens[3, 10] = model.tokenizer.eos_token_id
    store = ActivationStore(model, tokens, HOOKS[0], exclude_bos=True, exclude_eos=True, dtype=torch.float64)
    got, index = gather(store.batches(500, drop_last=True), HOOKS[0])
    kept = ~torch.isin(tokens.reshape(-1), torch.tensor([1, 2]))
    assert got.dtype == torch.float64 and len(index) == 500 * (int(kept.sum()) // 500)
    assert torch.equal(index, kept.nonzero()[: len(index), 0])
    full = cache_activations(model, tokens, HOOKS[0]).double()
    assert torch.equal(got, full[index])


def test_a_stream_resumes_from_its_state(model, rows) -> None:
    store = ActivationStore(model, rows, HOOKS, model_batch_size=3, buffer_size=500, seed=1)
    whole = list(store.batches(128))
    stream = store.stream(128)
    for _ in range(5):
        next(stream)
    state = stream.state_dict()
    resumed = store.stream(128)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(whole) - 5
    for a, b in zip(rest, whole[5:]):
        assert torch.equal(a.index, b.index) and torch.equal(a.activations[HOOKS[1]], b.activations[HOOKS[1]])
    other = ActivationStore(model, rows, HOOKS, model_batch_size=3, buffer_size=500, seed=2).stream(128)
    with pytest.raises(SAEError, match="other settings"):
        other.load_state_dict(state)


def test_token_sources(model, rows, tmp_path) -> None:
    np.save(tmp_path / "tokens.npy", rows.reshape(-1).numpy().astype(np.int32))
    torch.save(rows, tmp_path / "tokens.pt")
    expected = cache_activations(model, rows.reshape(-1, 64), HOOKS[0])
    for source in (tmp_path / "tokens.npy", rows.reshape(-1)):
        store = ActivationStore(model, source, HOOKS[0], seq_len=64)
        assert store.n_sequences == 24
        assert torch.equal(gather(store.batches(4096, shuffle=False), HOOKS[0])[0], expected)
    assert ActivationStore(model, tmp_path / "tokens.pt", HOOKS[0]).n_sequences == 12
    text = tmp_path / "stories.txt"
    text.write_text("\n".join(f"once upon a time there was a cat number {i} ." for i in range(200)))
    store = ActivationStore(model, Corpus(str(text)), HOOKS[0], seq_len=32, corpus_cache=tmp_path / "cache")
    stream = load_corpus(Corpus(str(text)), model.tokenizer, tmp_path / "cache")
    assert store.n_sequences == len(stream) // 32
    assert store.sequence_tokens(1) == [int(t) for t in stream[32:64]]


def test_bad_input(model, rows, monkeypatch) -> None:
    with pytest.raises(SAEError, match="no hook 'blocks.9.mlp.hook_in'"):
        ActivationStore(model, rows, ["blocks.0.mlp.hook_in", "blocks.9.mlp.hook_in"])
    with pytest.raises(DatasetError, match="fewer tokens than one sequence"):
        ActivationStore(model, rows.reshape(-1)[:100], HOOKS[0])
    with pytest.raises(DatasetError, match="integers"):
        ActivationStore(model, rows.float(), HOOKS[0])
    monkeypatch.setattr(store_module, "available_memory", lambda: 10**6)
    store = ActivationStore(model, rows, HOOKS[0], buffer_size=100_000)
    with pytest.raises(DatasetError, match="smaller buffer_size"):
        next(store.batches(64))
