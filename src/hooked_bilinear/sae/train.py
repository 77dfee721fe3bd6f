"""Training SAEs on activations cached from a bridge hook: the papers' TopK recipe, deterministic, CPU or GPU.

Defaults are the papers' (Pearce, Dooms, Rigg et al., section 5): TopK with k = 30, 4x expansion, decoder rows kept
at unit norm, tied initialisation (W_enc = W_dec^T), no encoder bias (b_enc stays 0). b_dec starts at the mean
activation and is applied to the input. The loss is the normalised MSE `||x_hat - x||^2 / ||x - mean||^2` of the
batch (its fraction of variance unexplained), plus an AuxK term (Gao et al.) on latents dead for `dead_after`
activations, which revives them; the decoder's gradient is projected off its rows before each step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from beartype import beartype
from tqdm.auto import tqdm

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
    and cut into [n, ctx] windows: how the shipped model's corpus was fed to it."""
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
    """The activations of `hook_name` [n_seq * pos, d] over token sequences [n_seq, pos], in batches, no grad."""
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
    """FVU, L0 and dead fraction of any SAE (anything with encode/decode) on activations [n, d_in]."""
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


@beartype
def train_sae(
    activations: torch.Tensor,
    config: SAETrainConfig | None = None,
    *,
    sae: TopKSAE | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> SAETrainResult:
    """Train a TopK SAE on activations [n, d_in] (see module doc). Same seed, same data, same device: same SAE."""
    config = config or SAETrainConfig()
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
    sae = sae.to(device).train()
    sae.b_enc.requires_grad_(config.encoder_bias)
    params = [p for p in sae.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=config.lr)
    g = torch.Generator().manual_seed(config.seed)
    n = activations.shape[0]
    order = torch.randperm(n, generator=g)
    position = 0
    since_fired = torch.zeros(sae.d_sae, dtype=torch.long, device=device)
    aux_k = config.aux_k or max(1, d_in // 2)
    losses: list[float] = []
    for step in tqdm(range(config.steps), desc="training SAE", disable=not progress):
        if position + config.batch_size > n:
            order, position = torch.randperm(n, generator=g), 0
        x = activations[order[position : position + config.batch_size]].to(device, sae.dtype)
        position += config.batch_size
        pre = sae.pre_activations(x)
        f = sae.activation(pre)
        x_hat = sae.decode(f)
        variance = (x - x.mean(0)).square().sum()
        fvu = (x_hat - x).square().sum() / variance
        loss = fvu
        since_fired += x.shape[0]
        since_fired[(f != 0).any(0)] = 0
        dead = since_fired > config.dead_after
        if config.aux_coefficient > 0 and dead.any():
            k_aux = min(aux_k, int(dead.sum()))
            dead_pre = torch.where(dead, pre, torch.full_like(pre, -torch.inf)).topk(k_aux, dim=-1)
            aux_f = torch.zeros_like(pre).scatter_(-1, dead_pre.indices, dead_pre.values.relu())
            residual = (x - x_hat).detach()
            aux = (aux_f @ sae.W_dec - residual).square().sum() / residual.square().sum().clamp_min(1e-12)
            loss = loss + config.aux_coefficient * aux
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # keep unit-norm decoder rows: drop the gradient along each row
            grad = sae.W_dec.grad
            if grad is not None:
                grad -= (grad * sae.W_dec).sum(1, keepdim=True) * sae.W_dec
        optimiser.step()
        _normalise_decoder(sae)
        losses.append(fvu.item())
        if step % 500 == 0:
            logger.info("step %d: batch FVU %.4f, dead latents %d", step, losses[-1], int(dead.sum()))
    return SAETrainResult(sae.eval(), losses)
