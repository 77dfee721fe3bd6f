"""Training SAEs on activations cached from a bridge hook: the papers' TopK recipe, deterministic, CPU or GPU.

Defaults are the papers' (Pearce, Dooms, Rigg et al., section 5): TopK with k = 30, 4x expansion, decoder rows kept
at unit norm, tied initialisation (W_enc = W_dec^T), no encoder bias (b_enc stays 0). b_dec starts at the mean
activation and is applied to the input. The loss is the normalised MSE `||x_hat - x||^2 / ||x - mean||^2` of the
batch (its fraction of variance unexplained), plus an AuxK term (Gao et al.) on latents dead for `dead_after`
activations, which revives them; the decoder's gradient is projected off its rows before each step.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from beartype import beartype
from tqdm.auto import tqdm

from hooked_bilinear.activations.cache import ActivationCache
from hooked_bilinear.activations.store import ActivationBatch, ActivationStore
from hooked_bilinear.analysis.checks import check_token_ids
from hooked_bilinear.errors import SAEError
from hooked_bilinear.sae.base import SAE
from hooked_bilinear.sae.topk import DEFAULT_EXPANSION, DEFAULT_K, TopKSAE

logger = logging.getLogger(__name__)


@beartype
def new_topk_sae(
    d_in: int,
    *,
    expansion: int = DEFAULT_EXPANSION,
    k: int = DEFAULT_K,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> TopKSAE:
    """A TopK SAE of width `expansion * d_in` with unit-norm random decoder rows and the tied encoder W_enc = W_dec^T."""
    sae = TopKSAE(d_in, expansion * d_in, k=k, metadata=metadata, dtype=dtype, device=device)
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(sae.d_sae, d_in, generator=g, dtype=torch.float64)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    with torch.no_grad():
        sae.W_dec.copy_(W_dec)
        sae.W_enc.copy_(W_dec.T)
    return sae


@beartype
def pack_texts(tokenizer: Any, texts: list[str], ctx: int) -> torch.Tensor:
    """Texts tokenized (with the tokenizer's own special tokens, e.g. [BOS]) and each followed by EOS, concatenated
    and cut into [n, ctx] windows: how the shipped model's corpus was fed to it.

    Args:
        tokenizer: a Hugging Face tokenizer (callable, returning "input_ids"; with an `eos_token_id`).
        texts: the texts, in order.
        ctx: the window length in tokens.

    Returns:
        Token ids [n, ctx], n = (number of tokens) // ctx; the last partial window is dropped.

    Raises:
        ValueError: the texts hold fewer than `ctx` tokens.
    """
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text)["input_ids"] + [tokenizer.eos_token_id])
    n = len(ids) // ctx
    if n == 0:
        raise ValueError(f"the texts hold {len(ids)} tokens, fewer than one window of {ctx}.")
    return torch.tensor(ids[: n * ctx]).reshape(n, ctx)


@beartype
def cache_activations(
    model: Any, tokens: torch.Tensor, hook_name: str, batch_size: int = 32, progress: bool = False
) -> torch.Tensor:
    """The activations of `hook_name` [n_seq * pos, d] over token sequences [n_seq, pos], in batches, no grad.

    Args:
        model: a hooked model (a bridge or `HookedTransformer`) with `hook_dict` and `run_with_cache`.
        tokens: integer token ids [n_seq, pos].
        hook_name: the hook to read, e.g. "blocks.0.mlp.hook_in".
        batch_size: sequences per forward pass (default 32).
        progress: show a progress bar over the batches (default False).

    Returns:
        The activations [n_seq * pos, d] as float32 on the CPU, sequence by sequence.

    Raises:
        ValueError: tokens are not [n_seq, pos], or hold ids outside the model's vocabulary.
        TypeError: tokens are not integer ids.
        SAEError: the model has no hook `hook_name`.
    """
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [n_seq, pos], got shape {tuple(tokens.shape)}.")
    if hook_name not in model.hook_dict:
        raise SAEError(f"the model has no hook {hook_name!r} (e.g. blocks.0.mlp.hook_in, blocks.0.mlp.hook_out).")
    check_token_ids(model, tokens)
    chunks = []
    with torch.no_grad():
        for start in tqdm(range(0, tokens.shape[0], batch_size), desc=f"caching {hook_name}", disable=not progress):
            _, cache = model.run_with_cache(
                tokens[start : start + batch_size], names_filter=hook_name, return_type=None
            )
            chunks.append(cache[hook_name].reshape(-1, cache[hook_name].shape[-1]).float().cpu())
    return torch.cat(chunks)


class SAEStats(NamedTuple):
    """fvu: fraction of variance unexplained `sum ||x_hat - x||^2 / sum ||x - mean x||^2`; l0: mean number of active
    features per activation; dead: fraction of features never active on these activations."""

    fvu: float
    l0: float
    dead: float


@beartype
def evaluate_sae(sae: Any, activations: torch.Tensor, batch_size: int = 4096) -> SAEStats:
    """FVU, L0 and dead fraction of any SAE (anything with encode/decode) on activations [n, d_in].

    Args:
        sae: the SAE (this package's or SAELens's: `encode`, `decode` and `W_dec`).
        activations: the activations [n, d_in] it reads.
        batch_size: activations per batch (default 4096).

    Returns:
        `SAEStats`: fvu (fraction of variance unexplained), l0 (mean number of active features per activation) and
        dead (the fraction of the d_sae features never active).
    """
    error = 0.0
    l0 = 0.0
    fired = None
    mean = activations.double().mean(0)
    variance = (activations.double() - mean).square().sum().item()
    with torch.no_grad():
        for start in range(0, activations.shape[0], batch_size):
            x = activations[start : start + batch_size].to(sae.W_dec.device)
            f = sae.encode(x)
            error += (sae.decode(f).double() - x.double()).square().sum().item()
            active = f != 0
            l0 += active.sum().item()
            fired = active.any(0) if fired is None else fired | active.any(0)
    assert fired is not None
    return SAEStats(error / variance, l0 / activations.shape[0], 1.0 - fired.float().mean().item())


@dataclass
class SAETrainConfig:
    """Training settings; the defaults are the papers' SAE settings with Adam as in Gao et al."""

    k: int = DEFAULT_K
    expansion: int = DEFAULT_EXPANSION
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-3
    seed: int = 0
    encoder_bias: bool = False
    aux_k: int | None = None  # latents in the AuxK term; None: d_in // 2
    aux_coefficient: float = 1 / 32
    dead_after: int = 200_000  # activations without firing after which a latent counts as dead
    metadata: dict[str, Any] = field(default_factory=dict)


class SAETrainResult(NamedTuple):
    sae: TopKSAE
    losses: list[float]  # the batch FVU per step


def _normalise_decoder(sae: SAE) -> None:
    with torch.no_grad():
        sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))


class _Trainer:
    """One SAE's optimiser and dead-latent counts: `step(x)` is one training step on a batch [b, d_in]."""

    def __init__(self, sae: TopKSAE, config: SAETrainConfig, device: torch.device) -> None:
        self.sae, self.config, self.device = sae.to(device).train(), config, device
        sae.b_enc.requires_grad_(config.encoder_bias)
        self.optimiser = torch.optim.Adam([p for p in sae.parameters() if p.requires_grad], lr=config.lr)
        self.since_fired = torch.zeros(sae.d_sae, dtype=torch.long, device=device)
        self.aux_k = config.aux_k or max(1, sae.d_in // 2)
        self.losses: list[float] = []
        self.l0 = 0.0
        self.dead = 0

    def step(self, x: torch.Tensor) -> None:
        sae, config = self.sae, self.config
        x = x.to(self.device, sae.dtype)
        pre = sae.pre_activations(x)
        f = sae.activation(pre)
        x_hat = sae.decode(f)
        variance = (x - x.mean(0)).square().sum()
        fvu = (x_hat - x).square().sum() / variance
        loss = fvu
        self.since_fired += x.shape[0]
        self.since_fired[(f != 0).any(0)] = 0
        dead = self.since_fired > config.dead_after
        if config.aux_coefficient > 0 and dead.any():
            k_aux = min(self.aux_k, int(dead.sum()))
            dead_pre = torch.where(dead, pre, torch.full_like(pre, -torch.inf)).topk(k_aux, dim=-1)
            aux_f = torch.zeros_like(pre).scatter_(-1, dead_pre.indices, dead_pre.values.relu())
            residual = (x - x_hat).detach()
            aux = (aux_f @ sae.W_dec - residual).square().sum() / residual.square().sum().clamp_min(1e-12)
            loss = loss + config.aux_coefficient * aux
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # keep unit-norm decoder rows: drop the gradient along each row
            grad = sae.W_dec.grad
            if grad is not None:
                grad -= (grad * sae.W_dec).sum(1, keepdim=True) * sae.W_dec
        self.optimiser.step()
        _normalise_decoder(sae)
        self.losses.append(fvu.item())
        self.l0 = (f != 0).sum(-1).double().mean().item()
        self.dead = int(dead.sum())
        step = len(self.losses) - 1
        if step % 500 == 0:
            logger.info(
                "%sstep %d: batch FVU %.4f, L0 %.1f, dead latents %d",
                f"{sae.hook_name}: " if sae.hook_name else "",
                step,
                self.losses[-1],
                self.l0,
                self.dead,
            )

    def postfix(self) -> str:
        return f"FVU {self.losses[-1]:.3f} L0 {self.l0:.1f} dead {self.dead}"

    def state_dict(self) -> dict[str, Any]:
        return {
            "sae": self.sae.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "since_fired": self.since_fired,
            "losses": self.losses,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sae.load_state_dict(state["sae"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.since_fired.copy_(state["since_fired"])
        self.losses = list(state["losses"])


@beartype
def train_sae(
    activations: torch.Tensor | ActivationStore | ActivationCache,
    config: SAETrainConfig | None = None,
    *,
    sae: TopKSAE | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 200,
    b_dec_rows: int = 16384,
) -> SAETrainResult:
    """Train a TopK SAE on activations [n, d_in] in memory, or streamed from an ActivationStore or ActivationCache of
    one hook (see `train_saes`). Same seed, same data, same device: same SAE.

    In memory, each epoch is `torch.randperm(n, generator)` of the rows (generator seeded with config.seed), the
    last partial batch dropped; b_dec starts at the mean of all rows.

    Args:
        activations: the activations [n, d_in], or a store / cache streaming one hook.
        config: the training settings (default SAETrainConfig()).
        sae: go on training this SAE instead of a new one.
        device: where to train.
        progress: a tqdm bar with FVU, L0 and dead latents.
        checkpoint_dir, checkpoint_every, b_dec_rows: for a stream, see `train_saes`.

    Returns:
        The SAE (in eval mode) and the batch FVU of each step.

    Raises:
        ValueError: activations of the wrong shape, or NaN/inf.
        SAEError: a stream of several hooks (use `train_saes`), or of fewer activations than one batch.
    """
    config = config or SAETrainConfig()
    if not isinstance(activations, torch.Tensor):
        if len(activations.hook_names) != 1:
            raise SAEError(
                f"the stream reads {len(activations.hook_names)} hooks; train_saes trains one SAE per hook from it."
            )
        hook = activations.hook_names[0]
        return train_saes(
            activations,
            {hook: config},
            saes=None if sae is None else {hook: sae},
            device=device,
            progress=progress,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            b_dec_rows=b_dec_rows,
        )[hook]
    if activations.ndim != 2 or activations.shape[0] < 2:
        raise ValueError(f"activations must be [n >= 2, d_in], got shape {tuple(activations.shape)}.")
    if not torch.isfinite(activations).all():
        raise ValueError("the activations hold NaN/inf values; an SAE cannot be trained on them.")
    device = torch.device(device or "cpu")
    d_in = activations.shape[1]
    if sae is None:
        sae = new_topk_sae(
            d_in, expansion=config.expansion, k=config.k, seed=config.seed, metadata=config.metadata, device=device
        )
        with torch.no_grad():
            sae.b_dec.copy_(activations.double().mean(0))
    sae.check_input(activations)
    trainer = _Trainer(sae, config, device)
    g = torch.Generator().manual_seed(config.seed)
    n = activations.shape[0]
    order = torch.randperm(n, generator=g)
    position = 0
    bar = tqdm(range(config.steps), desc="training SAE", disable=not progress)
    for _ in bar:
        if position + config.batch_size > n:
            order, position = torch.randperm(n, generator=g), 0
        trainer.step(activations[order[position : position + config.batch_size]])
        position += config.batch_size
        bar.set_postfix_str(trainer.postfix(), refresh=False)
    return SAETrainResult(trainer.sae.eval(), trainer.losses)


def _save_atomic(state: dict[str, Any], path: Path) -> None:
    partial = path.with_name(path.name + ".tmp")
    torch.save(state, partial)
    os.replace(partial, path)  # a checkpoint is whole or absent


@beartype
def train_saes(
    source: ActivationStore | ActivationCache,
    configs: SAETrainConfig | dict[str, SAETrainConfig],
    *,
    saes: dict[str, TopKSAE] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 200,
    b_dec_rows: int = 16384,
) -> dict[str, SAETrainResult]:
    """Train one TopK SAE per hook of a stream (an ActivationStore or ActivationCache), all from the same batches:
    one forward pass feeds them all. The stream is read pass after pass (each pass drawing on from the same
    shuffle generator) until the last SAE has had its steps; each pass drops its last partial batch.

    A new SAE's b_dec starts at the mean of the first `b_dec_rows` activations (or all, if fewer), which are then
    trained on first: with a store whose buffer holds the whole source and whose seed is config.seed, this is the
    in-memory `train_sae` exactly (same batches, same SAE).

    Args:
        source: the stream.
        configs: one SAETrainConfig for all hooks, or one per hook (hooks of the source); all with the same
            batch_size.
        saes: go on training these SAEs (by hook) instead of new ones.
        device: where to train.
        progress: a tqdm bar with each SAE's batch FVU, L0 and dead latents.
        checkpoint_dir: save the whole state (SAEs, optimisers, stream position and buffer) there every
            `checkpoint_every` steps (written to a temporary file and renamed: never half-written); a run started
            on a folder holding a checkpoint goes on from it, to the same SAEs as an uninterrupted run.
        checkpoint_every: steps between checkpoints.
        b_dec_rows: activations whose mean starts b_dec.

    Returns:
        hook -> (SAE, batch FVU per step).

    Raises:
        SAEError: configs for hooks the source lacks, different batch sizes, fewer activations than one batch, or
            a checkpoint of other settings.
    """
    hooks = list(source.hook_names)
    if isinstance(configs, SAETrainConfig):
        configs = {hook: configs for hook in hooks}
    unknown = sorted(set(configs) - set(hooks))
    if unknown:
        raise SAEError(f"configs name hooks {unknown} that the stream does not read ({hooks}).")
    hooks = [hook for hook in hooks if hook in configs]
    batch_size = {configs[hook].batch_size for hook in hooks}
    if len(batch_size) != 1:
        raise SAEError(f"SAEs trained from one stream share its batches: give them one batch_size, got {batch_size}.")
    size = batch_size.pop()
    device = torch.device(device or "cpu")
    total = max(configs[hook].steps for hook in hooks)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    path = folder / "train_state.pt" if folder is not None else None
    record = {hook: asdict(configs[hook]) for hook in hooks}
    stream = source.stream(size, drop_last=True)
    pending: list[ActivationBatch] = []
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["configs"] != record:
            raise SAEError(
                f"{path} is a checkpoint of other settings ({state['configs']}); resume with the same configs or "
                "choose another checkpoint_dir."
            )
        stream.load_state_dict(state["stream"])
        pending = [ActivationBatch(b["activations"], b["index"]) for b in state["pending"]]
        trainers = {}
        for hook in hooks:
            c = configs[hook]
            metadata = {"hook_name": hook, **c.metadata}
            sae = new_topk_sae(state["d_in"][hook], expansion=c.expansion, k=c.k, seed=c.seed, metadata=metadata)
            trainers[hook] = _Trainer(sae, c, device)
            trainers[hook].load_state_dict(state["trainers"][hook])
        step = int(state["step"])
        logger.info("resuming SAE training from %s at step %d", path, step)
    else:
        rows = 0
        while rows < b_dec_rows:  # within the first pass: b_dec from the first rows, kept to train on
            try:
                pending.append(next(stream))
            except StopIteration:
                break
            rows += size
        if not pending:
            raise SAEError(
                f"the stream holds fewer activations than one batch of {size}: give it more tokens or a smaller "
                "batch_size."
            )
        first = ActivationBatch(
            {h: torch.cat([b.activations[h] for b in pending]) for h in hooks}, torch.cat([b.index for b in pending])
        )
        in_order = first.index.argsort()  # the mean in corpus order: the in-memory path's, bit for bit
        trainers = {}
        for hook in hooks:
            c = configs[hook]
            x = first.activations[hook]
            if not torch.isfinite(x).all():
                raise ValueError(f"the activations of {hook} hold NaN/inf values; an SAE cannot be trained on them.")
            if saes is not None and hook in saes:
                sae = saes[hook]
            else:
                metadata = {"hook_name": hook, **c.metadata}
                sae = new_topk_sae(x.shape[1], expansion=c.expansion, k=c.k, seed=c.seed, metadata=metadata)
                with torch.no_grad():
                    sae.b_dec.copy_(x[in_order.to(x.device)].double().mean(0))
            sae.check_input(x)
            trainers[hook] = _Trainer(sae, c, device)
        step = 0
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    bar = tqdm(range(step, total), desc=f"training {len(hooks)} SAE(s)", disable=not progress)
    for step in bar:
        if pending:
            batch = pending.pop(0)
        else:
            try:
                batch = next(stream)
            except StopIteration:  # the next pass, drawing on from the same generator
                stream = source.stream(size, drop_last=True, generator=stream.generator)
                batch = next(stream)
        for hook, trainer in trainers.items():
            if step < trainer.config.steps:
                trainer.step(batch.activations[hook])
        bar.set_postfix_str(" | ".join(t.postfix() for t in trainers.values()), refresh=False)
        if path is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == total):
            _save_atomic(
                {
                    "step": step + 1,
                    "configs": record,
                    "d_in": {hook: t.sae.d_in for hook, t in trainers.items()},
                    "trainers": {hook: t.state_dict() for hook, t in trainers.items()},
                    "stream": stream.state_dict(),
                    "pending": [{"activations": b.activations, "index": b.index} for b in pending],
                },
                path,
            )
    return {hook: SAETrainResult(t.sae.eval(), t.losses) for hook, t in trainers.items()}
