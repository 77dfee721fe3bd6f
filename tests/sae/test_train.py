"""SAE training: the papers' initialisation and constraints, determinism, and recovery of a planted dictionary."""

from __future__ import annotations

import warnings

import pytest
import torch

from hooked_bilinear.activations.store import ActivationStore
from hooked_bilinear.errors import SAEError
from hooked_bilinear.sae.train import (
    SAETrainConfig,
    cache_activations,
    evaluate_sae,
    new_topk_sae,
    pack_texts,
    train_sae,
    train_saes,
)


def planted(n: int = 3000, d: int = 16, n_atoms: int = 32, active: int = 3, seed: int = 0) -> torch.Tensor:
    """Activations that are sums of `active` of `n_atoms` unit directions (always the same ones) with positive
    weights (drawn with `seed`), plus an offset."""
    atoms = torch.randn(n_atoms, d, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    atoms /= atoms.norm(dim=1, keepdim=True)
    codes = torch.zeros(n, n_atoms)
    idx = torch.rand(n, n_atoms, generator=g).argsort(dim=1)[:, :active]
    codes.scatter_(1, idx, torch.rand(n, active, generator=g) + 0.5)
    return codes @ atoms + 0.3


def test_papers_initialisation() -> None:
    sae = new_topk_sae(16, seed=3)
    assert (sae.d_sae, sae.k) == (64, 30)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert torch.equal(sae.b_enc, torch.zeros(64))


def test_training_is_deterministic_and_learns_a_planted_dictionary() -> None:
    x = planted()
    config = SAETrainConfig(
        k=4,
        expansion=4,
        steps=250,
        batch_size=256,
        lr=5e-3,
        seed=1,
        dead_after=2000,
        metadata={"hook_name": "blocks.0.mlp.hook_in"},
    )
    first = train_sae(x, config, progress=False)
    second = train_sae(x, config, progress=False)
    for name, p in first.sae.named_parameters():
        assert torch.equal(p, getattr(second.sae, name)), name
    sae = first.sae
    assert sae.hook_name == "blocks.0.mlp.hook_in"
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64), rtol=0, atol=1e-5)
    assert torch.equal(sae.b_enc, torch.zeros(64))  # no encoder bias
    stats = evaluate_sae(sae, planted(seed=1)[:1000])  # fresh samples of the same dictionary
    start = evaluate_sae(new_topk_sae(16, k=4, seed=1), x)
    assert stats.fvu < 0.2 and start.fvu > 5 * stats.fvu, (stats, start)
    assert stats.l0 <= 4
    assert first.losses[-1] < first.losses[0] / 5


def test_pack_texts() -> None:
    class Tokenizer:
        eos_token_id = 2

        def __call__(self, text: str) -> dict:
            return {"input_ids": [1] + [10 + len(word) for word in text.split()]}

    packed = pack_texts(Tokenizer(), ["a bb", "ccc", "d ee fff"], ctx=4)
    assert packed.tolist() == [
        [1, 11, 12, 2],
        [1, 13, 2, 1],
        [11, 12, 13, 2],
    ]  # [BOS] ids [EOS] concatenated, cut into windows


def test_training_starts_from_the_papers_initialisation() -> None:
    """Before any step: b_dec at the activations' mean, W_enc = W_dec^T (tied), unit decoder rows, b_enc = 0."""
    x = planted()
    sae = train_sae(x, SAETrainConfig(k=4, expansion=4, steps=0, seed=2), progress=False).sae
    torch.testing.assert_close(sae.b_dec, x.double().mean(0).to(sae.b_dec.dtype), rtol=0, atol=1e-6)
    assert sae.b_dec.abs().min() > 0.1  # the planted data's offset: a zero b_dec would fail above
    assert torch.equal(sae.W_enc, sae.W_dec.T) and torch.equal(sae.b_enc, torch.zeros(64))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))


# --- training from a stream (hooked_bilinear.activations) ---

HOOK_IN, HOOK_OUT = "blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out"
STREAM_CONFIG = SAETrainConfig(k=8, expansion=2, steps=40, batch_size=256, seed=5, dead_after=1500)


@pytest.fixture(scope="module")
def shipped():
    import hooked_bilinear as hb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.from_pretrained("ts-synthetic-2l")
    rows = torch.randint(5, model.cfg.d_vocab, (12, model.cfg.n_ctx), generator=torch.Generator().manual_seed(1))
    return model, rows


def same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_streamed_training_equals_in_memory_training(shipped) -> None:
    """A buffer holding the whole source, seeded like the SAE: the in-memory batches (40 steps = 6 epochs of 6
    batches plus 4), so the same SAE; two hooks from one pass, each the same as alone."""
    model, rows = shipped
    store = ActivationStore(model, rows, [HOOK_IN, HOOK_OUT], model_batch_size=4, buffer_size=10**6, seed=5)
    streamed = train_saes(store, STREAM_CONFIG, progress=False)
    assert store.forward_passes == 3 * 7  # 7 passes over 3 forward batches, both hooks from each
    for hook in (HOOK_IN, HOOK_OUT):
        memory = train_sae(cache_activations(model, rows, hook), STREAM_CONFIG, progress=False)
        assert same_weights(streamed[hook].sae, memory.sae), hook
        assert streamed[hook].losses == memory.losses
        assert streamed[hook].sae.hook_name == hook
    alone = train_sae(ActivationStore(model, rows, HOOK_IN, buffer_size=10**6, seed=5), STREAM_CONFIG, progress=False)
    assert same_weights(alone.sae, streamed[HOOK_IN].sae)


@pytest.mark.parametrize("trial", range(3))  # scripts/interrupt_streaming.py runs many more
def test_interrupted_training_resumes_to_the_same_weights(shipped, tmp_path, monkeypatch, trial) -> None:
    import random

    from hooked_bilinear.activations.cache import ActivationCache, write_cache
    from hooked_bilinear.sae import train as train_module

    model, rows = shipped
    write_cache(
        ActivationStore(model, rows, [HOOK_IN, HOOK_OUT], model_batch_size=4), tmp_path / "cache", shard_sequences=4
    )
    sources = [
        ActivationStore(model, rows, [HOOK_IN, HOOK_OUT], model_batch_size=2, buffer_size=1000, seed=trial),
        ActivationCache(tmp_path / "cache", buffer_size=1000, seed=trial),
    ]
    for n, source in enumerate(sources):
        whole = train_saes(source, STREAM_CONFIG, progress=False)
        crash = random.Random(trial * 10 + n).randrange(1, 2 * STREAM_CONFIG.steps)  # counts both SAEs' steps
        real, calls = train_module._Trainer.step, []

        def crashing(self, x, real=real, calls=calls, crash=crash):
            calls.append(1)
            if len(calls) == crash:
                raise KeyboardInterrupt
            real(self, x)

        monkeypatch.setattr(train_module._Trainer, "step", crashing)
        folder = tmp_path / f"state{n}"
        with pytest.raises(KeyboardInterrupt):
            train_saes(source, STREAM_CONFIG, progress=False, checkpoint_dir=folder, checkpoint_every=3)
        monkeypatch.setattr(train_module._Trainer, "step", real)
        resumed = train_saes(source, STREAM_CONFIG, progress=False, checkpoint_dir=folder, checkpoint_every=3)
        for hook in (HOOK_IN, HOOK_OUT):
            assert same_weights(resumed[hook].sae, whole[hook].sae), (type(source).__name__, crash, hook)
            assert resumed[hook].losses == whole[hook].losses


def test_streamed_training_bad_input(shipped, tmp_path) -> None:
    model, rows = shipped
    short = ActivationStore(model, rows[:1], HOOK_IN)
    with pytest.raises(SAEError, match="fewer activations than one batch of 256"):
        train_saes(short, {HOOK_IN: SAETrainConfig(batch_size=256)}, progress=False)
    with pytest.raises(SAEError, match="fewer activations than one batch of 512"):
        train_saes(short, {HOOK_IN: SAETrainConfig(batch_size=512)}, progress=False)
    store = ActivationStore(model, rows, [HOOK_IN, HOOK_OUT])
    with pytest.raises(SAEError, match="one batch_size"):
        train_saes(store, {HOOK_IN: SAETrainConfig(batch_size=64), HOOK_OUT: SAETrainConfig(batch_size=32)})
    with pytest.raises(SAEError, match="train_saes trains one SAE per hook"):
        train_sae(store, STREAM_CONFIG)
    train_saes(store, STREAM_CONFIG, progress=False, checkpoint_dir=tmp_path, checkpoint_every=100)
    with pytest.raises(SAEError, match="checkpoint of other settings"):
        train_saes(store, SAETrainConfig(k=4, batch_size=256), progress=False, checkpoint_dir=tmp_path)


def test_pack_texts_one_window_exactly_and_too_few_tokens() -> None:
    class Tokenizer:
        eos_token_id = 2

        def __call__(self, text: str) -> dict:
            return {"input_ids": [1] + [10 + len(word) for word in text.split()]}

    assert pack_texts(Tokenizer(), ["a bb"], ctx=4).tolist() == [[1, 11, 12, 2]]  # 4 tokens: one window
    with pytest.raises(ValueError, match=r"^the texts hold 4 tokens, fewer than one window of 5\.$"):
        pack_texts(Tokenizer(), ["a bb"], ctx=5)


def test_evaluate_sae_against_its_definitions() -> None:
    """FVU, L0 and dead fraction by their formulas, over uneven batches, on data far from the origin."""
    from hooked_bilinear import sae as S

    sae = S.ReLUSAE(3, 4, apply_b_dec_to_input=False)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, 0.0, 0.0, -1e3]))  # feature 3 never fires
        sae.W_dec.copy_(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, generator=g) + torch.tensor([0.0, 0.0, 5.0])
    x[:4, 0] = x[:4, 0].abs() + 0.1  # feature 0 fires only in the first batch of 4, feature 1 only in the second
    x[4:, 0] = -x[4:, 0].abs() - 0.1
    stats = evaluate_sae(sae, x, batch_size=4)
    with torch.no_grad():
        f = sae.encode(x)
        fvu = (sae.decode(f).double() - x.double()).square().sum() / (x.double() - x.double().mean(0)).square().sum()
    assert stats.fvu == pytest.approx(fvu.item(), rel=1e-9)
    assert stats.l0 == pytest.approx((f != 0).sum().item() / 7)
    assert stats.dead == pytest.approx(0.25)  # only feature 3
    assert evaluate_sae(sae, x, batch_size=7) == pytest.approx(stats)  # batching changes nothing


def test_new_topk_sae_default_seed_dtype_and_device() -> None:
    assert torch.equal(new_topk_sae(4, expansion=2, k=2).W_dec, new_topk_sae(4, expansion=2, k=2, seed=0).W_dec)
    wide = new_topk_sae(4, expansion=2, k=2, dtype=torch.float64)
    assert {p.dtype for p in wide.parameters()} == {torch.float64}
    assert torch.equal(wide.W_enc, wide.W_dec.T)
    assert {p.device.type for p in new_topk_sae(4, expansion=2, k=2, device="meta").parameters()} == {"meta"}


def test_train_sae_input_checks_and_its_starting_sae() -> None:
    x = torch.randn(2, 1)  # the least it trains on: two activations of one dimension
    sae = train_sae(x, SAETrainConfig(k=1, expansion=3, steps=0, seed=5), progress=False).sae
    assert (sae.d_in, sae.d_sae) == (1, 3)  # expansion * d_in latents
    x = torch.randn(6, 4)
    start = train_sae(x, SAETrainConfig(k=2, expansion=2, steps=0, seed=7), progress=False).sae
    torch.testing.assert_close(start.W_dec, new_topk_sae(4, expansion=2, k=2, seed=7).W_dec, rtol=0, atol=0)
    for bad in (torch.randn(1, 4), torch.randn(3, 2, 4), torch.randn(4)):
        with pytest.raises(ValueError) as info:
            train_sae(bad, SAETrainConfig(k=1, expansion=2, steps=0), progress=False)
        assert str(info.value) == f"activations must be [n >= 2, d_in], got shape {tuple(bad.shape)}."
    x[3, 1] = float("inf")
    with pytest.raises(ValueError) as info:
        train_sae(x, SAETrainConfig(k=1, expansion=2, steps=0), progress=False)
    assert str(info.value) == "the activations hold NaN/inf values; an SAE cannot be trained on them."
