"""A small causal-LM training loop for fine-tuning (bilinearize) and for training baselines: AdamW, warmup + cosine
learning rate, bf16 autocast on CUDA, optional gradient checkpointing, tqdm progress, resumable checkpoints."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hooked_bilinear.errors import HookedBilinearError
from hooked_bilinear.making.data import batch_at

STATE_FILE = "train-state.pt"


@dataclass
class TrainConfig:
    """Optimisation settings. `autocast`: bf16 autocast (None: on CUDA only)."""

    steps: int = 1000
    batch_size: int = 8
    seq_len: int = 256
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    gradient_checkpointing: bool = False
    autocast: Optional[bool] = None


@dataclass
class TrainResult:
    """Per-step training losses, tokens seen, wall time, the step a resumed run started from, and peak CUDA memory."""

    losses: list[float] = field(default_factory=list)
    tokens_seen: int = 0
    seconds: float = 0.0
    resumed_from: int = 0
    peak_cuda_bytes: Optional[int] = None


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr_ratio * lr` at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def lm_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (float32) of a causal LM on windows [b, s + 1]."""
    logits = model(input_ids=batch[:, :-1]).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate(model: torch.nn.Module, tokens: torch.Tensor, seq_len: int, batch_size: int = 8,
             max_windows: int = 64) -> float:
    """Mean next-token loss over consecutive non-overlapping windows of `tokens` (at most `max_windows`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = min((len(tokens) - 1) // seq_len, max_windows)
    if n < 1:
        raise ValueError(f"evaluation needs more than {seq_len} tokens, got {len(tokens)}.")
    windows = torch.stack([tokens[i * seq_len : i * seq_len + seq_len + 1] for i in range(n)])
    total = 0.0
    for chunk in windows.split(batch_size):
        total += lm_loss(model, chunk.to(device)).item() * len(chunk)
    model.train(was_training)
    return total / n


def _save_state(folder: Path, state: dict) -> None:
    """Atomic: a crash while saving leaves the previous checkpoint intact."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (STATE_FILE + ".partial")
    torch.save(state, partial)
    os.replace(partial, folder / STATE_FILE)


def train(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    config: TrainConfig,
    *,
    checkpoint_dir: Union[str, os.PathLike, None] = None,
    before_step: Optional[Callable[[int], dict]] = None,
    tag: str = "train",
    progress: bool = True,
) -> TrainResult:
    """Train `model` (a transformers causal LM, on its device) for `config.steps` steps on windows of `tokens`.

    `before_step(step)` runs before each step (bilinearize sets beta there) and returns extra progress-bar fields.
    With `checkpoint_dir`, the model, optimizer, step and losses are saved every `checkpoint_every` steps and at the
    end; a later call with the same folder and settings resumes where the last checkpoint left off.
    """
    device = next(model.parameters()).device
    use_autocast = config.autocast if config.autocast is not None else device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.95), fused=device.type == "cuda")
    result = TrainResult()
    settings = {"tag": tag, **asdict(config)}
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None and (folder / STATE_FILE).is_file():
        state = torch.load(folder / STATE_FILE, map_location=device, weights_only=True)
        if state["settings"] != settings:
            raise HookedBilinearError(
                f"{folder / STATE_FILE} was written by a run with other settings ({state['settings']}); delete it to "
                f"start afresh, or pass another checkpoint_dir."
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        result.losses, result.resumed_from = state["losses"], state["step"]
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(result.resumed_from, config.steps), total=config.steps, initial=result.resumed_from,
               desc=tag, disable=not progress, dynamic_ncols=True)
    for step in bar:
        extra = before_step(step) if before_step is not None else {}
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        batch = batch_at(tokens, step, config.batch_size, config.seq_len, config.seed).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
            loss = lm_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        result.losses.append(loss.item())
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}", **{k: f"{v:.3f}" for k, v in extra.items()})
        last = step + 1 == config.steps
        if folder is not None and ((step + 1) % config.checkpoint_every == 0 or last):
            _save_state(folder, {"settings": settings, "step": step + 1, "losses": result.losses,
                                 "model": model.state_dict(), "optimizer": optimizer.state_dict()})
    bar.close()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    model.eval()
    result.seconds = time.perf_counter() - start
    result.tokens_seen = (config.steps - result.resumed_from) * config.batch_size * config.seq_len
    if device.type == "cuda":
        result.peak_cuda_bytes = torch.cuda.max_memory_allocated(device)
    return result


def memory_estimate(model: torch.nn.Module, config: TrainConfig) -> dict[str, int]:
    """Rough bytes needed to train: float32 weights, gradients and two AdamW moments (16 bytes per parameter), plus
    activations kept for the backward pass (per layer ~ b s (8 d_model + 6 d_hidden) values in the compute dtype, one
    layer's worth plus the layer inputs with gradient checkpointing) and the logits (float32 and their gradient)."""
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    width = 2 if (config.autocast if config.autocast is not None else next(model.parameters()).is_cuda) else 4
    tokens = config.batch_size * config.seq_len
    per_layer = tokens * (8 * c.hidden_size + 6 * c.intermediate_size) * width
    layers = c.num_hidden_layers
    activations = (per_layer + layers * tokens * c.hidden_size * width if config.gradient_checkpointing
                   else layers * per_layer)
    logits = tokens * c.vocab_size * (4 + 4 + width)
    estimate = {"weights": 4 * n_params, "gradients": 4 * n_params, "optimizer": 8 * n_params,
                "activations": activations, "logits": logits}
    estimate["total"] = sum(estimate.values())
    return estimate
