"""SAE training: the papers' initialisation and constraints, determinism, and recovery of a planted dictionary."""

from __future__ import annotations

import copy
import re
import warnings
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hooked_bilinear.activations.store import ActivationStore
from hooked_bilinear.errors import SAEError
from hooked_bilinear.sae.train import (
    SAETrainConfig,
    SAETrainResult,
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


# --- fast tests of the trainer and of train_saes, on a tiny stand-in for a bridge (well under a second each) ---


class _Hook:
    def __init__(self, name: str) -> None:
        self.name = name


class TinyModel(torch.nn.Module):
    """What an ActivationStore and cache_activations ask of a bridge, with activations known in closed form: hook_in
    of a token is row `token` of a fixed table [vocab, 4] (offset from 0, so the mean is not 0), hook_out is
    tanh(hook_in @ W) [vocab, 3]. The hooks are called in that order, as a bridge's forward pass calls them."""

    def __init__(self, vocab: int = 40, n_ctx: int = 6) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.table = torch.nn.Parameter(torch.randn(vocab, 4, generator=g) + 0.5, requires_grad=False)
        self.out = torch.nn.Parameter(torch.randn(4, 3, generator=g), requires_grad=False)
        self.cfg = SimpleNamespace(n_ctx=n_ctx, d_vocab=vocab, device="cpu", model_name="tiny")
        self.hook_dict = {name: _Hook(name) for name in (HOOK_IN, HOOK_OUT)}
        self.active: list = []
        self.calls: list[dict] = []  # run_with_cache's arguments, call by call

    def acts(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every hook's activations [*tokens.shape, d], computed directly."""
        x = self.table[tokens]
        return {HOOK_IN: x, HOOK_OUT: torch.tanh(x @ self.out)}

    @contextmanager
    def hooks(self, fwd_hooks: list):
        self.active = list(fwd_hooks)
        try:
            yield self
        finally:
            self.active = []

    def forward(self, tokens: torch.Tensor, return_type: str | None = "logits") -> None:
        acts = self.acts(tokens)
        for name in (HOOK_IN, HOOK_OUT):
            for hook_name, fn in self.active:
                if hook_name == name:
                    fn(acts[name], self.hook_dict[name])

    def run_with_cache(self, tokens: torch.Tensor, names_filter=None, return_type: str | None = "logits"):
        self.calls.append({"rows": tokens.shape[0], "names_filter": names_filter, "return_type": return_type})
        return None, self.acts(tokens)


def tiny_rows(n_seq: int, seed: int = 0, vocab: int = 40, n_ctx: int = 6) -> torch.Tensor:
    return torch.randint(0, vocab, (n_seq, n_ctx), generator=torch.Generator().manual_seed(seed))


def corpus_order(model: TinyModel, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each hook's activations [n_seq * n_ctx, d] in corpus order, straight from the model's closed form."""
    return {name: act.reshape(-1, act.shape[-1]).detach() for name, act in model.acts(rows).items()}


TINY = SAETrainConfig(k=2, expansion=2, steps=15, batch_size=8, lr=1e-2, seed=3, dead_after=20)


class RecordedBar:
    def __init__(self, iterable, kwargs: dict) -> None:
        self.iterable, self.kwargs, self.postfixes = iterable, kwargs, []

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix_str(self, s: str, **kwargs) -> None:
        self.postfixes.append((s, kwargs))


class Bars:
    """Stands in for tqdm in sae.train: records each bar's arguments and the postfixes set on it."""

    def __init__(self) -> None:
        self.made: list[RecordedBar] = []

    def __call__(self, iterable, **kwargs) -> RecordedBar:
        self.made.append(RecordedBar(iterable, kwargs))
        return self.made[-1]


@pytest.fixture
def bars(monkeypatch) -> Bars:
    from hooked_bilinear.sae import train as train_module

    recorder = Bars()
    monkeypatch.setattr(train_module, "tqdm", recorder)
    return recorder


def record_steps(monkeypatch) -> list[tuple[str | None, torch.Tensor, torch.Tensor]]:
    """Each training step's (hook, batch, latents active on it before the step), in order."""
    from hooked_bilinear.sae import train as train_module

    real, seen = train_module._Trainer.step, []

    def step(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            fired = (self.sae.encode(x.to(self.sae.dtype)) != 0).any(0)
        seen.append((self.sae.hook_name, x.clone(), fired))
        real(self, x)

    monkeypatch.setattr(train_module._Trainer, "step", step)
    return seen


def reference_step(params: dict[str, torch.Tensor], x: torch.Tensor, since: torch.Tensor, config: SAETrainConfig):
    """One step by the module doc's formulas in float64, top-k chosen row by row: the batch FVU, the AuxK term on
    latents not active for more than dead_after activations (aux_k of them, default d_in // 2, at least 1), and the
    gradients of FVU + aux_coefficient * AuxK, W_dec's projected off its rows."""
    p = {name: value.detach().double().clone().requires_grad_(True) for name, value in params.items()}
    x = x.double()
    b, d_in = x.shape
    pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]

    def top_rows(allowed: torch.Tensor, count: int) -> torch.Tensor:
        mask = torch.zeros_like(pre)
        for i in range(b):
            order = sorted((j for j in range(pre.shape[1]) if allowed[j]), key=lambda j: -pre[i, j].item())
            mask[i, order[:count]] = 1.0
        return mask

    f = pre.relu() * top_rows(torch.ones(pre.shape[1], dtype=torch.bool), config.k)
    x_hat = f @ p["W_dec"] + p["b_dec"]
    fvu = (x_hat - x).square().sum() / (x - x.mean(0)).square().sum()
    fired = (f != 0).any(0)
    since = torch.where(fired, 0, since + b)
    dead = since > config.dead_after
    loss = fvu
    if config.aux_coefficient > 0 and dead.any():
        count = min(config.aux_k or max(1, d_in // 2), int(dead.sum()))
        aux_f = pre.relu() * top_rows(dead, count)
        residual = (x - x_hat).detach()
        aux = (aux_f @ p["W_dec"] - residual).square().sum() / residual.square().sum()
        loss = loss + config.aux_coefficient * aux
    loss.backward()
    grads = {name: value.grad for name, value in p.items()}
    w = p["W_dec"].detach()
    grads["W_dec"] = grads["W_dec"] - (grads["W_dec"] * w).sum(1, keepdim=True) * w
    l0 = (f != 0).sum(1).double().mean().item()
    return SimpleNamespace(fvu=fvu.item(), grads=grads, since=since, dead=int(dead.sum()), l0=l0)


@pytest.mark.parametrize(
    ("d_in", "dead_after", "aux_k", "aux_coefficient", "encoder_bias"),
    [
        (5, 5, None, 1 / 32, False),  # latents dead from the first step on; AuxK on d_in // 2 = 2 of them
        (2, 6, None, 0.5, True),  # none dead before the second step (6 > 6 is false); max(1, 1) = 1; b_enc trained
        (4, 5, 3, 1 / 32, False),  # aux_k given
    ],
)
def test_each_training_step_follows_the_loss_and_adam_by_their_formulas(
    d_in: int, dead_after: int, aux_k: int | None, aux_coefficient: float, encoder_bias: bool
) -> None:
    """Four steps on batches of 6, each against `reference_step` and Adam's update written out (betas 0.9, 0.999,
    eps 1e-8), then the decoder rows back to unit norm; small activations (||x - x_hat||^2 < 1) so the AuxK
    denominator's guard is never what divides."""
    from hooked_bilinear.sae import train as train_module

    config = SAETrainConfig(
        k=2, lr=1e-2, dead_after=dead_after, aux_k=aux_k, aux_coefficient=aux_coefficient, encoder_bias=encoder_bias
    )
    sae = new_topk_sae(d_in, expansion=6, k=2, seed=4)
    batches = 0.05 * (torch.randn(4, 6, d_in, generator=torch.Generator().manual_seed(d_in)) + 1.0)
    with torch.no_grad():
        sae.b_dec.copy_(batches[0].mean(0))
    trainer = train_module._Trainer(sae, config, torch.device("cpu"))
    names = ["W_enc", "b_enc", "W_dec", "b_dec"]
    trained = names if encoder_bias else ["W_enc", "W_dec", "b_dec"]
    moments = {name: (0.0, 0.0) for name in trained}
    since = torch.zeros(sae.d_sae, dtype=torch.long)
    for t, x in enumerate(batches, start=1):
        before = {name: getattr(sae, name).detach().double().clone() for name in names}
        ref = reference_step(before, x, since, config)
        since = ref.since
        trainer.step(x)
        assert trainer.losses[-1] == pytest.approx(ref.fvu, rel=1e-5)
        for name in trained:
            grad = getattr(sae, name).grad
            torch.testing.assert_close(grad.double(), ref.grads[name], rtol=1e-4, atol=1e-6, msg=f"step {t} {name}")
            m, v = moments[name]
            g = grad.double()
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g.square()
            moments[name] = (m, v)
            expected = before[name] - config.lr * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
            if name == "W_dec":
                expected = expected / expected.norm(dim=1, keepdim=True)
            torch.testing.assert_close(getattr(sae, name).double(), expected, rtol=0, atol=2e-6, msg=f"{t} {name}")
        if not encoder_bias:
            assert sae.b_enc.grad is None and torch.equal(sae.b_enc, torch.zeros(sae.d_sae))
        assert trainer.since_fired.dtype == torch.long and torch.equal(trainer.since_fired, since)
        assert (trainer.l0, trainer.dead) == (pytest.approx(ref.l0), ref.dead)
        assert trainer.postfix() == f"FVU {ref.fvu:.3f} L0 {ref.l0:.1f} dead {ref.dead}"
    assert len(trainer.losses) == 4
    assert ref.dead > (aux_k or max(1, d_in // 2))  # the AuxK term chose among more dead latents than it takes


def test_the_trainer_logs_steps_0_500_1000_and_so_on(caplog) -> None:
    import logging

    from hooked_bilinear.sae import train as train_module

    config = SAETrainConfig(k=1, lr=1e-3, dead_after=4)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0)) + 1.0
    trainer = train_module._Trainer(
        new_topk_sae(2, expansion=2, k=1, metadata={"hook_name": HOOK_IN}), config, torch.device("cpu")
    )
    expected = []
    with caplog.at_level(logging.INFO, logger="hooked_bilinear.sae.train"):
        for step in range(502):
            trainer.step(x)
            if step in (0, 500):
                expected.append(
                    f"{HOOK_IN}: step {step}: batch FVU {trainer.losses[-1]:.4f}, L0 {trainer.l0:.1f}, "
                    f"dead latents {trainer.dead}"
                )
        assert [r.getMessage() for r in caplog.records if r.name == "hooked_bilinear.sae.train"] == expected
        caplog.clear()
        bare = train_module._Trainer(new_topk_sae(2, expansion=2, k=1), config, torch.device("cpu"))
        bare.step(x)
        assert [r.getMessage() for r in caplog.records] == [
            f"step 0: batch FVU {bare.losses[0]:.4f}, L0 {bare.l0:.1f}, dead latents {bare.dead}"
        ]


@pytest.mark.parametrize("n", [8, 10])
def test_train_sae_draws_its_batches_epoch_by_epoch_from_one_generator(monkeypatch, n: int) -> None:
    """Epochs of `torch.randperm(n, generator)` (seeded with config.seed), in batches of 4, the last partial batch
    dropped: 7 steps read 2, 2, 2, 1 batches (n = 8) or the same counts of the 10-row epochs."""
    seen = record_steps(monkeypatch)
    x = torch.arange(2.0 * n).reshape(n, 2)  # row i is (2i, 2i + 1)
    train_sae(x, SAETrainConfig(k=1, expansion=2, steps=7, batch_size=4, seed=9), progress=False)
    g = torch.Generator().manual_seed(9)
    expected: list[list[int]] = []
    while len(expected) < 7:
        order = torch.randperm(n, generator=g)
        expected += [order[i : i + 4].tolist() for i in range(0, n - 3, 4)]
    assert [(batch[:, 0] / 2).long().tolist() for _, batch, _ in seen] == expected[:7]


def test_train_sae_progress_bar(bars) -> None:
    x = planted(64, d=4, n_atoms=8, active=2)
    result = train_sae(x, SAETrainConfig(k=2, expansion=2, steps=3, batch_size=16))  # progress by default
    (bar,) = bars.made
    assert bar.kwargs == {"desc": "training SAE", "disable": False} and bar.iterable == range(3)
    assert [kwargs for _, kwargs in bar.postfixes] == [{"refresh": False}] * 3  # not redrawn on every step
    for (text, _), loss in zip(bar.postfixes, result.losses, strict=True):
        assert re.fullmatch(rf"FVU {loss:.3f} L0 [0-2]\.\d dead \d+", text), text
    train_sae(x, SAETrainConfig(k=2, expansion=2, steps=1, batch_size=16), progress=False)
    assert bars.made[1].kwargs["disable"] is True


def test_train_sae_trains_float64_activations_in_the_saes_float32() -> None:
    x = planted(96, d=4, n_atoms=8, active=2)  # float32 values, so the float64 copy holds the same numbers
    config = SAETrainConfig(k=2, expansion=2, steps=6, batch_size=16, seed=1, dead_after=16)
    single = train_sae(x, config, progress=False)
    double = train_sae(x.double(), config, progress=False)
    assert {p.dtype for p in double.sae.parameters()} == {torch.float32}
    assert same_weights(single.sae, double.sae) and single.losses == double.losses


def test_cache_activations_reads_one_hook_in_batches_without_logits(bars) -> None:
    model, rows = TinyModel(), tiny_rows(40)
    acts = cache_activations(model, rows, HOOK_OUT)  # 32 sequences a batch by default
    assert torch.equal(acts, corpus_order(model, rows)[HOOK_OUT])
    assert model.calls == [
        {"rows": 32, "names_filter": HOOK_OUT, "return_type": None},
        {"rows": 8, "names_filter": HOOK_OUT, "return_type": None},
    ]
    assert bars.made[0].kwargs == {"desc": f"caching {HOOK_OUT}", "disable": True}
    cache_activations(model, rows, HOOK_IN, batch_size=16, progress=True)
    assert [call["rows"] for call in model.calls[2:]] == [16, 16, 8]
    assert bars.made[1].kwargs == {"desc": f"caching {HOOK_IN}", "disable": False}


def test_evaluate_sae_reads_4096_activations_at_a_time() -> None:
    sae = new_topk_sae(2, expansion=2, k=1)
    sizes: list[int] = []

    class Counting:
        W_dec = sae.W_dec

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            sizes.append(x.shape[0])
            return sae.encode(x)

        def decode(self, f: torch.Tensor) -> torch.Tensor:
            return sae.decode(f)

    x = torch.randn(4100, 2, generator=torch.Generator().manual_seed(0))
    assert evaluate_sae(Counting(), x) == pytest.approx(evaluate_sae(sae, x, batch_size=4100))
    assert sizes == [4096, 4]


def tiny_store(model: TinyModel, rows: torch.Tensor, hooks=(HOOK_IN, HOOK_OUT), **kwargs) -> ActivationStore:
    return ActivationStore(model, rows, list(hooks), model_batch_size=kwargs.pop("model_batch_size", 4), **kwargs)


def test_train_saes_on_a_tiny_stream_is_in_memory_training_of_each_hook() -> None:
    """A buffer holding the whole source, seeded like the SAEs: each pass is the in-memory path's epoch (48
    activations, 6 batches of 8; 15 steps read 3 passes of 2 forward batches), so each hook's SAE and losses are
    the in-memory ones, b_dec at the mean of all activations included."""
    model, rows = TinyModel(), tiny_rows(8)
    store = tiny_store(model, rows, buffer_size=10**6, seed=TINY.seed)
    result = train_saes(store, TINY, progress=False)
    assert list(result) == [HOOK_IN, HOOK_OUT]
    assert store.forward_passes == 3 * 2
    memory = corpus_order(model, rows)
    for hook in (HOOK_IN, HOOK_OUT):
        alone = train_sae(memory[hook], TINY, progress=False)
        assert same_weights(result[hook].sae, alone.sae), hook
        assert result[hook].losses == alone.losses and len(alone.losses) == TINY.steps
        assert result[hook].sae.hook_name == hook and not result[hook].sae.training


def test_train_saes_gives_each_hook_its_own_config_and_steps() -> None:
    model, rows = TinyModel(), tiny_rows(8)
    memory = corpus_order(model, rows)
    configs = {
        HOOK_IN: replace(TINY, steps=5, metadata={"note": "in"}),
        HOOK_OUT: replace(TINY, steps=9, k=3, lr=2e-2),
    }
    result = train_saes(tiny_store(model, rows, buffer_size=10**6, seed=TINY.seed), configs, progress=False)
    for hook, config in configs.items():
        alone = train_sae(memory[hook], config, progress=False)
        assert same_weights(result[hook].sae, alone.sae), hook
        assert result[hook].losses == alone.losses and len(alone.losses) == config.steps
        assert result[hook].sae.k == config.k
    assert result[HOOK_IN].sae.metadata == {"hook_name": HOOK_IN, "note": "in"}
    only = train_saes(tiny_store(model, rows, buffer_size=10**6, seed=TINY.seed), {HOOK_OUT: TINY}, progress=False)
    assert list(only) == [HOOK_OUT]  # the hooks without a config are not trained
    assert same_weights(only[HOOK_OUT].sae, train_sae(memory[HOOK_OUT], TINY, progress=False).sae)


def test_train_saes_refuses_bad_settings_before_writing_anything(tmp_path) -> None:
    model = TinyModel()
    store = tiny_store(model, tiny_rows(8))
    folder = tmp_path / "state"

    def refused(error: type[Exception], configs, source=store, **kwargs) -> str:
        with pytest.raises(error) as info:
            train_saes(source, configs, progress=False, checkpoint_dir=folder, **kwargs)
        assert not folder.exists()
        return str(info.value)

    assert refused(SAEError, {HOOK_IN: TINY, "blocks.9.mlp.hook_in": TINY}) == (
        "configs name hooks ['blocks.9.mlp.hook_in'] that the stream does not read "
        "(['blocks.0.mlp.hook_in', 'blocks.0.mlp.hook_out'])."
    )
    assert refused(SAEError, {HOOK_IN: TINY, HOOK_OUT: replace(TINY, batch_size=16)}) == (
        "SAEs trained from one stream share its batches: give them one batch_size, got {8, 16}."
    )
    assert refused(SAEError, TINY, source=tiny_store(model, tiny_rows(1), [HOOK_IN])) == (
        "the stream holds fewer activations than one batch of 8: give it more tokens or a smaller batch_size."
    )
    wrong = new_topk_sae(3, expansion=2, k=2, metadata={"hook_name": HOOK_IN})
    assert "reads vectors of size d_in=3, but got activations of size 4" in refused(
        SAEError, TINY, saes={HOOK_IN: wrong}
    )
    broken, rows = TinyModel(), tiny_rows(8)
    rows[5, 2] = 3
    with torch.no_grad():
        broken.table[3, 1] = float("inf")
    assert refused(ValueError, TINY, source=tiny_store(broken, rows, [HOOK_IN])) == (
        f"the activations of {HOOK_IN} hold NaN/inf values; an SAE cannot be trained on them."
    )
    with pytest.raises(SAEError) as info:
        train_sae(store, TINY)
    assert str(info.value) == "the stream reads 2 hooks; train_saes trains one SAE per hook from it."
    first = replace(TINY, steps=2)
    train_saes(store, first, progress=False, checkpoint_dir=folder)
    with pytest.raises(SAEError) as info:
        train_saes(store, replace(TINY, steps=2, k=1), progress=False, checkpoint_dir=folder)
    record = {hook: asdict(first) for hook in (HOOK_IN, HOOK_OUT)}
    assert str(info.value) == (
        f"{folder / 'train_state.pt'} is a checkpoint of other settings ({record}); resume with the same configs or "
        "choose another checkpoint_dir."
    )


def test_train_saes_starts_b_dec_at_the_mean_of_the_first_batches_in_corpus_order() -> None:
    """b_dec is the mean of the first whole batches holding b_dec_rows activations (54 activations: 6 batches of 8
    a pass, 6 left over), taken in corpus order; the rest of the SAE is `new_topk_sae`'s."""
    model, rows = TinyModel(), tiny_rows(9)
    memory = corpus_order(model, rows)
    for b_dec_rows, batches in ((12, 2), (16, 2), (17, 3), (10**6, 6)):
        saes = train_saes(
            tiny_store(model, rows, buffer_size=16, seed=2),
            replace(TINY, steps=0),
            b_dec_rows=b_dec_rows,
            progress=False,
        )
        stream = tiny_store(model, rows, buffer_size=16, seed=2).stream(8, drop_last=True)
        index = torch.cat([next(stream).index for _ in range(batches)]).sort().values
        for hook, d_in in ((HOOK_IN, 4), (HOOK_OUT, 3)):
            sae = saes[hook].sae
            assert torch.equal(sae.b_dec, memory[hook][index].double().mean(0).float()), (b_dec_rows, hook)
            assert torch.equal(sae.W_dec, new_topk_sae(d_in, expansion=2, k=2, seed=TINY.seed).W_dec)
            assert torch.equal(sae.W_enc, sae.W_dec.T) and saes[hook].losses == []


def test_train_saes_b_dec_defaults_to_the_first_16384_activations() -> None:
    model, rows = TinyModel(n_ctx=64), tiny_rows(273, n_ctx=64)  # 17472 activations: 17 batches of 1024
    store = tiny_store(model, rows, [HOOK_IN], model_batch_size=64)  # no buffer: corpus order
    sae = train_saes(store, replace(TINY, steps=0, batch_size=1024), progress=False)[HOOK_IN].sae
    assert torch.equal(sae.b_dec, corpus_order(model, rows)[HOOK_IN][:16384].double().mean(0).float())


def test_train_saes_goes_on_training_the_saes_it_is_given() -> None:
    model, rows = TinyModel(), tiny_rows(8)
    memory = corpus_order(model, rows)
    start = new_topk_sae(4, expansion=2, k=2, seed=11)
    with torch.no_grad():
        start.b_dec.fill_(-1.0)
    given = copy.deepcopy(start)
    result = train_saes(tiny_store(model, rows, buffer_size=10**6, seed=TINY.seed), TINY, saes={HOOK_IN: given})
    assert result[HOOK_IN].sae is given
    assert same_weights(given, train_sae(memory[HOOK_IN], TINY, sae=copy.deepcopy(start), progress=False).sae)
    assert same_weights(result[HOOK_OUT].sae, train_sae(memory[HOOK_OUT], TINY, progress=False).sae)
    kept = train_saes(tiny_store(model, rows), replace(TINY, steps=0), saes={HOOK_IN: copy.deepcopy(start)})
    assert torch.equal(kept[HOOK_IN].sae.b_dec, torch.full((4,), -1.0))  # not reset to the mean


def test_train_saes_progress_bar(bars) -> None:
    model, rows = TinyModel(), tiny_rows(8)
    result = train_saes(tiny_store(model, rows), replace(TINY, steps=3))  # progress by default
    (bar,) = bars.made
    assert bar.kwargs == {"desc": "training 2 SAE(s)", "disable": False} and bar.iterable == range(3)
    assert [kwargs for _, kwargs in bar.postfixes] == [{"refresh": False}] * 3
    for i, (text, _) in enumerate(bar.postfixes):
        parts = [rf"FVU {result[hook].losses[i]:.3f} L0 [0-2]\.\d dead \d+" for hook in (HOOK_IN, HOOK_OUT)]
        assert re.fullmatch(" \\| ".join(parts), text), text
    train_saes(tiny_store(model, rows), replace(TINY, steps=1), progress=False)
    assert bars.made[1].kwargs["disable"] is True


def test_train_sae_on_a_stream_is_train_saes_of_its_one_hook(monkeypatch, tmp_path) -> None:
    from hooked_bilinear.sae import train as train_module

    model, rows = TinyModel(), tiny_rows(8)
    store = tiny_store(model, rows, [HOOK_OUT], buffer_size=16, seed=1)
    via = train_sae(store, TINY, progress=False)
    direct = train_saes(store, TINY, progress=False)[HOOK_OUT]
    assert same_weights(via.sae, direct.sae) and via.losses == direct.losses
    calls = []
    trained = SAETrainResult(new_topk_sae(3, expansion=2, k=2), [])
    monkeypatch.setattr(train_module, "train_saes", lambda *a, **kw: calls.append((a, kw)) or {HOOK_OUT: trained})
    assert train_sae(store, TINY) is trained
    sae = new_topk_sae(3, expansion=2, k=2)
    train_sae(
        store, TINY, sae=sae, device="cpu", progress=False, checkpoint_dir=tmp_path, checkpoint_every=5, b_dec_rows=64
    )
    defaults = {"saes": None, "device": None, "progress": True, "checkpoint_dir": None}
    given = {"saes": {HOOK_OUT: sae}, "device": "cpu", "progress": False, "checkpoint_dir": tmp_path}
    assert calls == [
        ((store, {HOOK_OUT: TINY}), defaults | {"checkpoint_every": 200, "b_dec_rows": 16384}),
        ((store, {HOOK_OUT: TINY}), given | {"checkpoint_every": 5, "b_dec_rows": 64}),
    ]


def test_train_saes_writes_its_whole_state_every_interval_and_at_the_end(tmp_path, monkeypatch) -> None:
    from hooked_bilinear.sae import train as train_module

    real_save, saved = train_module._save_atomic, []

    def save(state, path) -> None:
        saved.append((state["step"], len(state["pending"]), path))
        real_save(state, path)

    monkeypatch.setattr(train_module, "_save_atomic", save)
    seen = record_steps(monkeypatch)
    model, rows = TinyModel(), tiny_rows(8)  # 48 activations: the first pass's 6 batches kept for b_dec and trained on
    store = tiny_store(model, rows, buffer_size=16, seed=1)
    config = replace(TINY, steps=7)
    folder = tmp_path / "runs" / "a"
    result = train_saes(store, config, progress=False, checkpoint_dir=folder, checkpoint_every=3)
    path = folder / "train_state.pt"
    assert saved == [(3, 3, path), (6, 0, path), (7, 0, path)]
    assert [p.name for p in folder.iterdir()] == ["train_state.pt"]  # no temporary file left
    state = torch.load(path, weights_only=False)
    assert set(state) == {"step", "configs", "d_in", "trainers", "stream", "pending"}
    assert state["step"] == 7 and state["pending"] == []
    assert state["configs"] == {HOOK_IN: asdict(config), HOOK_OUT: asdict(config)}
    assert state["d_in"] == {HOOK_IN: 4, HOOK_OUT: 3}
    for hook in (HOOK_IN, HOOK_OUT):
        saved_trainer, sae = state["trainers"][hook], result[hook].sae
        assert set(saved_trainer) == {"sae", "optimiser", "since_fired", "losses"}
        assert saved_trainer["sae"].keys() == sae.state_dict().keys()
        assert all(torch.equal(value, sae.state_dict()[key]) for key, value in saved_trainer["sae"].items())
        assert saved_trainer["losses"] == result[hook].losses
        since = torch.zeros(sae.d_sae, dtype=torch.long)
        for _, batch, fired in (s for s in seen if s[0] == hook):
            since = torch.where(fired, 0, since + batch.shape[0])
        assert saved_trainer["since_fired"].dtype == torch.long and torch.equal(saved_trainer["since_fired"], since)
        assert [float(s["step"]) for s in saved_trainer["optimiser"]["state"].values()] == [7.0] * 3
    first_pass = store.stream(8, drop_last=True)
    assert len(list(first_pass)) == 6
    second_pass = store.stream(8, drop_last=True, generator=first_pass.generator)
    next(second_pass)  # the 7th step's batch
    resumed = store.stream(8, drop_last=True)
    resumed.load_state_dict(state["stream"])
    assert torch.equal(next(resumed).index, next(second_pass).index)  # the stream goes on where it stood


def test_train_saes_checkpoints_every_200_steps_by_default(tmp_path, monkeypatch) -> None:
    from hooked_bilinear.sae import train as train_module

    saved: list[int] = []
    monkeypatch.setattr(train_module, "_save_atomic", lambda state, path: saved.append(state["step"]))
    model = TinyModel()
    store = tiny_store(model, tiny_rows(2), [HOOK_OUT])
    train_saes(store, replace(TINY, steps=201, expansion=1, k=1), progress=False, checkpoint_dir=tmp_path)
    assert saved == [200, 201]


@pytest.mark.parametrize(
    ("kind", "crash"),
    [("store", 2), ("store", 9), ("cache", 14), ("cache", 20)],  # counts both SAEs' steps
)
def test_train_saes_resumes_from_its_checkpoint_to_the_same_saes(tmp_path, monkeypatch, caplog, kind, crash) -> None:
    """Stopped at the crash-th SAE step (before any checkpoint; within the first pass's batches kept for b_dec; in
    a later pass; in the last step) and run again on the same folder: the same SAEs and losses as without a stop,
    the run saying where it resumed; a run on the folder of a finished training trains nothing more."""
    import logging

    from hooked_bilinear.activations.cache import ActivationCache, write_cache
    from hooked_bilinear.sae import train as train_module

    model, rows = TinyModel(), tiny_rows(7)  # 42 activations: 5 batches of 8 a pass
    source: ActivationStore | ActivationCache = tiny_store(model, rows, buffer_size=12, seed=4, model_batch_size=2)
    if kind == "cache":
        write_cache(tiny_store(model, rows, model_batch_size=2), tmp_path / "cache", shard_sequences=2)
        source = ActivationCache(tmp_path / "cache", buffer_size=12, seed=4)
    config = replace(TINY, steps=10)
    whole = train_saes(source, config, progress=False)
    real, calls = train_module._Trainer.step, []

    def crashing(self, x) -> None:
        calls.append(1)
        if len(calls) == crash:
            raise KeyboardInterrupt
        real(self, x)

    folder = tmp_path / "state"
    monkeypatch.setattr(train_module._Trainer, "step", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_saes(source, config, progress=False, checkpoint_dir=folder, checkpoint_every=3)
    monkeypatch.setattr(train_module._Trainer, "step", real)
    with caplog.at_level(logging.INFO, logger="hooked_bilinear.sae.train"):
        resumed = train_saes(source, config, progress=False, checkpoint_dir=folder, checkpoint_every=3)
    last = (crash - 1) // 2 // 3 * 3  # whole steps before the crash, down to a multiple of 3
    resuming = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming")]
    assert resuming == ([f"resuming SAE training from {folder / 'train_state.pt'} at step {last}"] if last else [])
    for hook in (HOOK_IN, HOOK_OUT):
        assert same_weights(resumed[hook].sae, whole[hook].sae), hook
        assert resumed[hook].losses == whole[hook].losses
        assert resumed[hook].sae.hook_name == hook and not resumed[hook].sae.training

    def no_step(self, x) -> None:
        raise AssertionError("a finished training took another step")

    monkeypatch.setattr(train_module._Trainer, "step", no_step)
    done = train_saes(source, config, progress=False, checkpoint_dir=folder, checkpoint_every=3)
    for hook in (HOOK_IN, HOOK_OUT):
        assert same_weights(done[hook].sae, whole[hook].sae) and done[hook].losses == whole[hook].losses


def test_train_saes_reads_pass_after_pass_dropping_each_partial_batch(monkeypatch) -> None:
    """54 activations, a buffer holding them all: each pass is `torch.randperm(54, generator)` of them (one
    generator, seeded with the store's seed, drawn on from pass to pass) in 6 batches of 8, the 6 left over
    dropped; 15 steps read 6, 6 and 3 batches."""
    seen = record_steps(monkeypatch)
    model, rows = TinyModel(), tiny_rows(9)
    train_saes(tiny_store(model, rows, [HOOK_IN], buffer_size=10**6, seed=5), TINY, progress=False)
    g = torch.Generator().manual_seed(5)
    expected: list[torch.Tensor] = []
    while len(expected) < TINY.steps:
        order = torch.randperm(54, generator=g)
        expected += [order[i : i + 8] for i in range(0, 48, 8)]
    memory = corpus_order(model, rows)[HOOK_IN]
    assert len(seen) == TINY.steps
    for step, ((_, batch, _), index) in enumerate(zip(seen, expected, strict=False)):
        assert torch.equal(batch, memory[index]), step


def test_a_checkpoint_is_whole_or_absent(tmp_path, monkeypatch) -> None:
    """Each checkpoint is written to train_state.pt.tmp and renamed: a write that fails half way leaves the last
    whole checkpoint in place (and the partial file beside it), from which the training resumes to the SAEs of an
    uninterrupted run."""
    model, rows = TinyModel(), tiny_rows(8)
    config = replace(TINY, steps=7)
    whole = train_saes(tiny_store(model, rows, buffer_size=16, seed=1), config, progress=False)
    real_save, written = torch.save, []

    def failing_save(obj, path) -> None:
        written.append(Path(path).name)
        if len(written) == 2:
            Path(path).write_bytes(b"half a checkpoint")
            raise OSError("no space left on device")
        real_save(obj, path)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="no space left"):
        train_saes(
            tiny_store(model, rows, buffer_size=16, seed=1),
            config,
            progress=False,
            checkpoint_dir=tmp_path,
            checkpoint_every=3,
        )
    monkeypatch.setattr(torch, "save", real_save)
    assert written == ["train_state.pt.tmp"] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_state.pt", "train_state.pt.tmp"]
    assert torch.load(tmp_path / "train_state.pt", weights_only=False)["step"] == 3
    resumed = train_saes(
        tiny_store(model, rows, buffer_size=16, seed=1),
        config,
        progress=False,
        checkpoint_dir=tmp_path,
        checkpoint_every=3,
    )
    for hook in (HOOK_IN, HOOK_OUT):
        assert same_weights(resumed[hook].sae, whole[hook].sae) and resumed[hook].losses == whole[hook].losses


def test_the_device_asked_for_reaches_every_trainer(monkeypatch, tmp_path) -> None:
    """No GPU here: where training runs is checked by what each trainer is handed, the device asked for as a
    torch.device (the CPU when none is asked for), in memory, from a stream and on a resumed run."""
    from hooked_bilinear.sae import train as train_module

    handed: list[torch.device] = []

    class Recording(train_module._Trainer):
        def __init__(self, sae, config, device) -> None:
            handed.append(device)
            super().__init__(sae, config, device)

    monkeypatch.setattr(train_module, "_Trainer", Recording)
    model, rows = TinyModel(), tiny_rows(8)
    config = replace(TINY, steps=2)
    train_sae(corpus_order(model, rows)[HOOK_IN], config, progress=False)
    train_sae(corpus_order(model, rows)[HOOK_IN], config, device="cpu", progress=False)
    train_saes(tiny_store(model, rows), config, device="cpu", progress=False, checkpoint_dir=tmp_path)
    train_saes(tiny_store(model, rows), config, progress=False, checkpoint_dir=tmp_path)  # resumed: nothing left
    assert handed == [torch.device("cpu")] * 6 and all(isinstance(d, torch.device) for d in handed)
