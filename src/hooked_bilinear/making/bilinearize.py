"""`bilinearize`: fine-tune a SwiGLU Llama-family model into a bilinear one (the papers' recipe).

Every MLP's SiLU becomes `x * sigmoid(beta x)`; fine-tuning anneals beta from 1 (SiLU) to 0 over the first
`anneal_fraction` of the steps (beta = 1 - alpha(t)) and trains on at beta = 0, where the gate is x / 2. That constant
is then folded into gate_proj (weights and bias times 1/2) and the config says `hidden_act: "linear"`: a stock
LlamaForCausalLM computing `down_proj(gate_proj(x) * up_proj(x))`, verified equal to the annealed model at beta = 0.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict
from typing import Any, Optional, Union

import torch
from beartype import beartype
from transformers import LlamaForCausalLM
from transformers.activations import ACT2FN

from hooked_bilinear.errors import ConversionError
from hooked_bilinear.loading.checkpoint import read_config
from hooked_bilinear.loading.llama import is_llama_config, load_llama
from hooked_bilinear.loading.pretrained import resolve_folder
from hooked_bilinear.making.data import TokenSource, check_tokens, load_tokens
from hooked_bilinear.making.gate import AnnealedGate, Schedule, beta_at
from hooked_bilinear.making.train import (
    TrainConfig,
    TrainResult,
    memory_estimate,
    train,
)
from hooked_bilinear.publishing.provenance import Provenance, attach
from hooked_bilinear.publishing.verify import check_equal_logits, probe_tokens

SWIGLU_ACTS = ("silu", "swish")


def load_swiglu_llama(model_or_path: Any) -> tuple[LlamaForCausalLM, str]:
    """A SwiGLU LlamaForCausalLM (float32) and its name; ConversionError for anything else."""
    if isinstance(model_or_path, (str, os.PathLike)):
        folder = resolve_folder(model_or_path)
        raw = read_config(folder)
        if not is_llama_config(raw):
            raise ConversionError(
                f"bilinearize needs a Llama-family checkpoint (model_type 'llama'); {model_or_path} has model_type "
                f"{raw.get('model_type')!r}."
            )
        model, name = load_llama(folder, torch.float32), str(model_or_path)
    else:
        model = model_or_path
        name = getattr(getattr(model, "config", None), "name_or_path", "") or f"a {type(model).__name__}"
    if not isinstance(model, LlamaForCausalLM):
        raise ConversionError(f"bilinearize needs a LlamaForCausalLM, got {type(model).__name__}.")
    act = model.config.hidden_act
    if act == "linear":
        raise ConversionError(f"{name} is already bilinear (hidden_act 'linear'); there is nothing to anneal.")
    if act not in SWIGLU_ACTS:
        raise ConversionError(f"bilinearize anneals a SiLU gate; {name} has hidden_act {act!r}.")
    return model.float(), name


def fold_gate(model: LlamaForCausalLM) -> None:
    """At beta = 0 the gate is x / 2: halve gate_proj (weight and bias), make the activation the identity, and
    record `hidden_act: "linear"` (in place)."""
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.gate_proj.weight.mul_(0.5)
            if layer.mlp.gate_proj.bias is not None:
                layer.mlp.gate_proj.bias.mul_(0.5)
            layer.mlp.act_fn = ACT2FN["linear"]
    model.config.hidden_act = "linear"


def _format_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


@beartype
def bilinearize(
    model_or_path: Any,
    tokens: TokenSource,
    *,
    config: Optional[TrainConfig] = None,
    anneal_fraction: float = 0.8,
    schedule: Schedule = "cosine",
    device: Union[str, torch.device, None] = None,
    checkpoint_dir: Union[str, os.PathLike, None] = None,
    progress: bool = True,
    **train_options: Any,
) -> LlamaForCausalLM:
    """Fine-tune a SwiGLU Llama into a bilinear one; returns a stock LlamaForCausalLM with `hidden_act: "linear"`.

    Args:
        model_or_path: a LlamaForCausalLM with hidden_act "silu", or a folder / shipped name / Hub id of one.
        tokens: token ids (tensor, array, list, or a .pt / .npy file), a stream or rows; all inside the vocabulary.
        config: TrainConfig (steps, batch_size, seq_len, lr, gradient_checkpointing, autocast, ...); or pass its
            fields as keyword arguments.
        anneal_fraction: share of the steps over which beta goes 1 -> 0 (the rest train at beta = 0).
        schedule: alpha(t) "cosine" or "linear".
        device: "cpu" or "cuda" (default: CUDA if available); bf16 autocast on CUDA.
        checkpoint_dir: checkpoints every `config.checkpoint_every` steps; a rerun with the same folder resumes.

    The model is trained in place on `device` and returned in eval mode; the run's figures (losses, tokens/s, peak
    memory) and the fold's verification are recorded for the model card (`hooked_bilinear.save_pretrained`).
    """
    if not 0.0 < anneal_fraction <= 1.0:
        raise ValueError(f"anneal_fraction={anneal_fraction} must lie in (0, 1].")
    config = TrainConfig(**{**(asdict(config) if config is not None else {}), **train_options})
    model, name = load_swiglu_llama(model_or_path)
    stream = load_tokens(tokens)
    check_tokens(stream, model.config.vocab_size, config.seq_len)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    estimate = memory_estimate(model, config)
    print(f"bilinearize {name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters on {device}; "
          f"estimated training memory {_format_bytes(estimate['total'])} ("
          + ", ".join(f"{k} {_format_bytes(v)}" for k, v in estimate.items() if k != "total") + ")")
    gate = AnnealedGate(1.0).to(device)
    for layer in model.model.layers:
        layer.mlp.act_fn = gate
    anneal_steps = max(1, round(anneal_fraction * config.steps))

    def set_beta(step: int) -> dict:
        gate.beta.fill_(beta_at(step, anneal_steps, schedule))
        return {"beta": gate.beta.item()}

    result: TrainResult = train(model, stream, config, checkpoint_dir=checkpoint_dir, before_step=set_beta,
                                tag="bilinearize", progress=progress)
    gate.beta.fill_(0.0)
    probe = probe_tokens(model.config.vocab_size, config.seq_len)
    reference = copy.deepcopy(model)  # the annealed model at beta = 0, to verify the fold against
    fold_gate(model)
    difference = check_equal_logits(reference, model, probe, 1e-5, f"bilinearize({name}) fold")
    seconds = max(result.seconds, 1e-9)
    attach(model, Provenance(
        source=name,
        conversion=(f"bilinearize (hooked_bilinear): fine-tuned {config.steps} steps (batch {config.batch_size} x "
                    f"{config.seq_len} tokens, lr {config.lr:g}) with the MLP gate x*sigmoid(beta x), beta annealed "
                    f"1 -> 0 over {anneal_steps} steps ({schedule} schedule), then x/2 folded into gate_proj"),
        base_model=name if "/" in name and not os.path.exists(name) else None,
        max_abs_logit_diff=difference,
        details={"final_train_loss": round(result.losses[-1], 4),
                 "tokens_per_second": round(result.tokens_seen / seconds, 1),
                 "peak_cuda_memory_bytes": result.peak_cuda_bytes,
                 "estimated_memory_bytes": estimate["total"]},
    ))
    del reference
    return model.eval()
