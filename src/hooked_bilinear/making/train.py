"""A causal-LM training loop for fine-tuning (bilinearize) and for training baselines, on one process or many
(torch.distributed: DDP or FSDP2): AdamW, warmup + cosine learning rate, bf16 autocast on CUDA, optional gradient
checkpointing, packed sequences in a seeded order, tqdm progress and reports on rank 0, checkpoints (DCP) that resume
on any number of processes."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import LlamaForCausalLM, PreTrainedModel

from hooked_bilinear import atomic
from hooked_bilinear.errors import HookedBilinearError
from hooked_bilinear.making import distributed as distributed_
from hooked_bilinear.making.config import TrainConfig
from hooked_bilinear.making.data import PackedSequences
from hooked_bilinear.making.distributed import Strategy
from hooked_bilinear.making.report import RunLog

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Per-step training losses (global batch) and report rows, tokens seen, wall time, the step a resumed run started
    from, peak CUDA memory, and on rank 0 the trained model as a plain (unwrapped, unsharded) module."""

    losses: list[float] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    tokens_seen: int = 0
    seconds: float = 0.0
    resumed_from: int = 0
    peak_cuda_bytes: int | None = None
    model: torch.nn.Module | None = None
    loss_curve: Path | None = None


def _max_positions(model: torch.nn.Module) -> int | None:
    """The model's `max_position_embeddings`, when its config has one."""
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return value if isinstance(value, int) else None


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `min_lr_ratio * lr` at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def lm_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (float32) of a causal LM on sequences [b, s + 1]."""
    logits = model(input_ids=batch[:, :-1]).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, tokens: torch.Tensor, seq_len: int, batch_size: int = 8, max_windows: int = 64
) -> float:
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


def train(
    model: PreTrainedModel,
    tokens: torch.Tensor | np.ndarray | PackedSequences,
    config: TrainConfig,
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    before_step: Callable[[int], dict[str, float]] | None = None,
    tag: str = "train",
    progress: bool = True,
    strategy: Strategy = "auto",
    report_to: tuple[str, ...] = (),
    settings: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `model` (a transformers causal LM, already on this rank's device) for `config.steps` steps.

    In a torch.distributed process group (torchrun) the model is wrapped (`strategy`: DDP, or FSDP2 "fsdp"), and each
    rank computes `batch_size / world_size` rows of the global batch. `before_step(step)` runs before each step
    (bilinearize sets beta there) and returns extra figures to report. With `checkpoint_dir`: a checkpoint every
    `checkpoint_every` steps and at the end, metrics.csv and loss_curve.png; a later call with the same folder and
    settings, on any number of processes, resumes from the newest checkpoint. `settings` are extra values that must
    match on resume. On rank 0, `result.model` is the trained model unwrapped (on CPU after FSDP); None elsewhere.
    """
    config.check(_max_positions(model))
    me = distributed_.session()
    kind = distributed_.resolve_strategy(strategy)
    if config.batch_size % me.world_size:
        raise HookedBilinearError(
            f"--batch-size {config.batch_size} (the global batch) must be a multiple of the number "
            f"of processes, {me.world_size}."
        )
    local = config.batch_size // me.world_size
    micro = config.micro_batch_size or local
    if local % micro:
        raise HookedBilinearError(
            f"--micro-batch-size {micro} must divide each process's share of the batch, "
            f"{config.batch_size} / {me.world_size} = {local}."
        )
    data = tokens if isinstance(tokens, PackedSequences) else PackedSequences(tokens, config.seq_len, config.seed)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    run_settings = {"tag": tag, **asdict(config), "dataset_tokens": len(data.tokens), **(settings or {})}
    with contextlib.ExitStack() as stack:
        if folder is not None and me.main:  # one run per checkpoint folder; the kernel frees it if this one dies
            folder.mkdir(parents=True, exist_ok=True)
            stack.enter_context(atomic.locked(folder / "run", wait=False, what="training with checkpoints in"))
        if folder is not None:  # what identifies the run: a folder of another model or data is refused
            run_settings["fingerprint"] = {"model": state_hash(model), "data": data_hash(data.tokens)}
        return _train(model, data, config, folder, run_settings, before_step, tag, progress, kind, report_to)


def state_hash(model: torch.nn.Module) -> str:
    """blake2b of a model's state (names, dtypes, shapes, bytes): its starting point, for the run fingerprint."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def data_hash(array: np.ndarray) -> str:
    """blake2b of a token stream, read in chunks (a memory-mapped corpus is not loaded whole)."""
    digest = hashlib.blake2b(f"{array.dtype}:{array.shape};".encode(), digest_size=16)
    flat = array.reshape(-1)
    for start in range(0, len(flat), 1 << 24):
        digest.update(np.ascontiguousarray(flat[start : start + (1 << 24)]).tobytes())
    return digest.hexdigest()


def _train(
    model: PreTrainedModel,
    data: PackedSequences,
    config: TrainConfig,
    folder: Path | None,
    run_settings: dict[str, Any],
    before_step: Callable[[int], dict[str, float]] | None,
    tag: str,
    progress: bool,
    kind: Literal["none", "ddp", "fsdp"],
    report_to: tuple[str, ...],
) -> TrainResult:
    me = distributed_.session()
    local = config.batch_size // me.world_size
    rows = range(me.rank * local, (me.rank + 1) * local)
    micro = config.micro_batch_size or local
    device = next(model.parameters()).device
    use_autocast = config.autocast if config.autocast is not None else device.type == "cuda"
    saved = distributed_.latest_progress(folder) if folder is not None else None
    if saved is not None and saved["settings"] != run_settings:
        differ = sorted(
            k for k in {*saved["settings"], *run_settings} if saved["settings"].get(k) != run_settings.get(k)
        )
        raise HookedBilinearError(
            f"the checkpoint in {folder} was written by another run (different {', '.join(differ)}: there "
            f"{ {k: saved['settings'].get(k) for k in differ} }, here { {k: run_settings.get(k) for k in differ} }); "
            f"delete the folder to start afresh, or pass another checkpoint_dir."
        )

    skeleton = distributed_.meta_skeleton(model) if kind == "fsdp" and me.main else None
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    wrapped = distributed_.wrap(model, kind, device)
    optimizer = torch.optim.AdamW(
        wrapped.parameters(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        betas=(0.9, 0.95),
        fused=device.type == "cuda" and kind != "fsdp",
    )
    result = TrainResult()
    if saved is not None and folder is not None:
        distributed_.load_checkpoint(folder, wrapped, optimizer)
        result.history, result.resumed_from = saved["history"], saved["step"]
        result.losses = [row["loss"] for row in result.history]
        logger.info("%s: resuming from step %d of %d (%s)", tag, result.resumed_from, config.steps, folder)
    log = RunLog(folder, result.history, report_to, run_settings, enabled=me.main)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wrapped.train()
    start = time.perf_counter()
    bar = tqdm(
        range(result.resumed_from, config.steps),
        total=config.steps,
        initial=result.resumed_from,
        desc=tag,
        disable=not (progress and me.main),
        dynamic_ncols=True,
    )
    for step in bar:
        extra = before_step(step) if before_step is not None else {}
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = data.batch(step, config.batch_size, rows)
        optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        chunks = batch.split(micro)
        for i, chunk in enumerate(chunks):
            with distributed_.gradient_sync(wrapped, kind, enabled=i == len(chunks) - 1):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
                    part = lm_loss(wrapped, chunk.to(device)) / len(chunks)  # equal chunks: the mean of the share
                part.backward()
            loss += part.detach()
        torch.nn.utils.clip_grad_norm_(wrapped.parameters(), config.grad_clip)
        optimizer.step()
        row = {
            "step": step + 1,
            "loss": distributed_.global_mean(loss),
            **extra,
            "lr": lr,
            "tokens": (step + 1) * config.batch_size * config.seq_len,
        }
        log.log(row)
        result.losses.append(row["loss"])
        bar.set_postfix(loss=f"{row['loss']:.3f}", **{k: f"{v:.3f}" for k, v in extra.items()})
        last = step + 1 == config.steps
        if folder is not None and ((step + 1) % config.checkpoint_every == 0 or last):
            distributed_.save_checkpoint(
                folder, step + 1, wrapped, optimizer, {"settings": run_settings, "history": log.rows}
            )
    bar.close()
    result.history = log.rows
    result.seconds = time.perf_counter() - start
    result.tokens_seen = (config.steps - result.resumed_from) * config.batch_size * config.seq_len
    if device.type == "cuda":
        result.peak_cuda_bytes = torch.cuda.max_memory_allocated(device)
    result.loss_curve = log.close(f"{tag}: final train loss {result.losses[-1]:.4f}" if result.losses else tag)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_disable()
    if kind == "fsdp":
        full = distributed_.full_state_on_main(wrapped)
        if skeleton is not None:
            skeleton.load_state_dict(full, assign=True)
            if isinstance(skeleton, PreTrainedModel):  # assign=True gives tied weights two tensors
                skeleton.tie_weights()
            result.model = skeleton.eval()
    else:
        result.model = model.eval() if me.main else None
    return result


def memory_estimate(
    model: LlamaForCausalLM, config: TrainConfig, world_size: int = 1, strategy: str = "none"
) -> dict[str, int]:
    """Rough bytes each rank needs to train: float32 weights, gradients and two AdamW moments (16 bytes per parameter;
    divided across ranks under FSDP, plus two layers' full weights gathered at a time; DDP adds its gradient buckets),
    activations kept for the backward pass of one micro-batch (default: this rank's share of the batch; per layer
    ~ b s (8 d_model + 6 d_hidden) values in the compute dtype; one layer's worth plus the layer inputs with gradient
    checkpointing) and the logits (float32 and their gradient)."""
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    width = 2 if (config.autocast if config.autocast is not None else next(model.parameters()).is_cuda) else 4
    tokens = (config.micro_batch_size or max(config.batch_size // world_size, 1)) * config.seq_len
    per_layer = tokens * (8 * c.hidden_size + 6 * c.intermediate_size) * width
    layers = c.num_hidden_layers
    activations = (
        per_layer + layers * tokens * c.hidden_size * width if config.gradient_checkpointing else layers * per_layer
    )
    logits = tokens * c.vocab_size * (4 + 4 + width)
    sharded = strategy == "fsdp" and world_size > 1
    share = n_params / world_size if sharded else n_params
    estimate = {
        "weights": int(4 * share),
        "gradients": int(4 * share),
        "optimizer": int(8 * share),
        "activations": activations,
        "logits": logits,
    }
    if sharded:
        layer_params = sum(p.numel() for p in model.model.layers[0].parameters())
        estimate["gathered_layers"] = 2 * 4 * layer_params
    if strategy == "ddp" and world_size > 1:
        estimate["ddp_buckets"] = 4 * n_params
    estimate["total"] = sum(estimate.values())
    return estimate
