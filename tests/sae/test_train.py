"""SAE training: the papers' initialisation and constraints, determinism, and recovery of a planted dictionary."""

from __future__ import annotations

import torch

from hooked_bilinear.sae.train import (
    SAETrainConfig,
    evaluate_sae,
    new_topk_sae,
    pack_texts,
    train_sae,
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
