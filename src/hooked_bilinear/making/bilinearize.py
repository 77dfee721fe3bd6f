"""`bilinearize`: fine-tune a SwiGLU Llama-family model into a bilinear one (the papers' recipe by default).

Every MLP's SiLU becomes `c * x * sigmoid(beta x)`; fine-tuning anneals beta from 1 (SiLU) to 0 over the first
`anneal_fraction` of the steps (beta = 1 - alpha(t)) and trains on at beta = 0, where the gate is c * x / 2. That
per-channel factor is then folded into gate_proj (rows of the weight and the bias times c / 2) and the config says
`hidden_act: "linear"`: a stock LlamaForCausalLM computing `down_proj(gate_proj(x) * up_proj(x))`, verified equal to
the annealed model at beta = 0. Runs on one process or under torchrun (DDP / FSDP2, see making/distributed.py).
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from beartype import beartype
from transformers import LlamaForCausalLM
from transformers.activations import ACT2FN

from hooked_bilinear.errors import ConversionError
from hooked_bilinear.loading.llama import is_llama_config, load_llama
from hooked_bilinear.loading.pretrained import resolve_folder
from hooked_bilinear.making import distributed as distributed_
from hooked_bilinear.making.corpus import BUILDERS, Corpus, load_corpus
from hooked_bilinear.making.data import TOKEN_SUFFIXES, TokenSource, check_tokens, load_tokens
from hooked_bilinear.making.distributed import Strategy
from hooked_bilinear.making.gate import AnnealedGate, Schedule, beta_at
from hooked_bilinear.making.recipe import Recipe, get_recipe
from hooked_bilinear.making.train import (
    TrainConfig,
    TrainResult,
    memory_estimate,
    train,
)
from hooked_bilinear.modeling.configuration import BILINEAR_ACT
from hooked_bilinear.modeling.files import read_config
from hooked_bilinear.publishing.provenance import Provenance, attach
from hooked_bilinear.publishing.source import attach_tokenizer, tokenizer_of
from hooked_bilinear.publishing.verify import check_equal_logits, logits_of, probe_tokens

SWIGLU_ACTS = ("silu", "swish")
logger = logging.getLogger(__name__)


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
    if act == BILINEAR_ACT:
        raise ConversionError(f"{name} is already bilinear (hidden_act 'linear'); there is nothing to anneal.")
    if act not in SWIGLU_ACTS:
        raise ConversionError(f"bilinearize anneals a SiLU gate; {name} has hidden_act {act!r}.")
    return model.float(), name


def fold_gate(model: LlamaForCausalLM) -> None:
    """At beta = 0 the gate is c * x / 2: scale gate_proj's rows (weight and bias) by c / 2 (c = 1 without a learnable
    scale), make the activation the identity, and record `hidden_act: "linear"` (in place)."""
    with torch.no_grad():
        for layer in model.model.layers:
            mlp = layer.mlp
            c = getattr(mlp.act_fn, "c", None)
            scale = (
                torch.full_like(mlp.gate_proj.weight[:, 0], 0.5)
                if c is None
                else 0.5 * c.detach().to(mlp.gate_proj.weight.dtype)
            )
            mlp.gate_proj.weight.mul_(scale[:, None])
            if mlp.gate_proj.bias is not None:
                mlp.gate_proj.bias.mul_(scale)
            mlp.act_fn = ACT2FN[BILINEAR_ACT]
    model.config.hidden_act = BILINEAR_ACT


def _format_bytes(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _is_hub_name(data: Any) -> bool:
    if not isinstance(data, (str, os.PathLike)):
        return False
    path = Path(data)
    return not path.exists() and path.suffix not in TOKEN_SUFFIXES and path.suffix not in BUILDERS


def _load_data(data: Any, model_or_path: Any, tokenizer: Any, config: TrainConfig, cache: Path) -> Any:
    """Token ids (tensor / array / list / .pt / .npy) as they are; a text corpus (a Corpus, a local text / jsonl /
    json / parquet / arrow file or folder, or a Hub dataset name) tokenized with the model's tokenizer."""
    if isinstance(data, Corpus) or (
        isinstance(data, (str, os.PathLike))
        and (Path(data).is_dir() or Path(data).suffix in BUILDERS or _is_hub_name(data))
    ):
        corpus = data if isinstance(data, Corpus) else Corpus(str(data))
        if tokenizer is None and isinstance(model_or_path, (str, os.PathLike)):
            from hooked_bilinear.loading.tokenizer import load_folder_tokenizer

            tokenizer = load_folder_tokenizer(resolve_folder(model_or_path))
        needed = config.steps * config.batch_size * config.seq_len + 1  # one pass of a streamed corpus, no repeats
        return load_corpus(corpus, tokenizer, cache, max_tokens=needed)
    return load_tokens(data)


@beartype
def bilinearize(
    model_or_path: Any,
    data: TokenSource | Corpus,
    *,
    config: TrainConfig | None = None,
    recipe: str | Recipe = "paper",
    anneal_fraction: float | None = None,
    schedule: Schedule | None = None,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    data_cache: str | os.PathLike | None = None,
    strategy: Strategy = "auto",
    report_to: tuple[str, ...] = (),
    progress: bool = True,
    **train_options: Any,
) -> LlamaForCausalLM | None:
    """Fine-tune a SwiGLU Llama into a bilinear one; returns a stock LlamaForCausalLM with `hidden_act: "linear"`.

    Args:
        model_or_path: a LlamaForCausalLM with hidden_act "silu", or a folder / shipped name / Hub id of one.
        data: token ids (tensor, array, list, or a .pt / .npy file), all inside the vocabulary (under torchrun: the
            same on every rank); or a text corpus: a
            `Corpus`, a local .txt / .jsonl / .json / .parquet / .arrow file or folder ("text" column), or a Hub
            dataset name (streamed), tokenized with the model's tokenizer (or `tokenizer`) and cached in
            `data_cache` (default: checkpoint_dir/data, else $HF_HOME/hooked_bilinear/corpus).
        config: TrainConfig (steps, global batch_size, seq_len, lr, gradient_checkpointing, autocast, ...); it
            replaces the recipe's lr / weight_decay / autocast. Or pass its fields as keyword arguments, each
            overriding the recipe's. Defaults: TrainConfig's (1000 steps, batch 8 x 256 tokens, 50 warmup steps).
            A warmup longer than the run, or a seq_len beyond the model's max_position_embeddings, is an error.
        recipe: one of `making.recipe.RECIPES` (each sets the schedule, anneal_fraction, lr, weight decay, bf16
            and whether the gate has a learnable scale c):
            "paper" (default): linear beta 1 -> 0 over the first 30% of the steps, learnable gate scale c, lr 1e-4,
            weight decay 0.1, bf16 on CUDA (the paper's TinyLlama run);
            "authors-code": the authors' finetuning.py, alpha(f) = min(f e^{1.05 (1 - f)}, 1) over the whole run
            ("exp" schedule, beta reaches 0 at ~91%), learnable c, lr 1e-4, weight decay 0.1, bf16 on CUDA;
            "cosine80": the package's first default, cosine over the first 80%, no learnable scale, lr 3e-4, weight
            decay 0.1, bf16 on CUDA. Or a `Recipe` of your own.
        anneal_fraction: overrides the recipe's share of the steps over which beta goes 1 -> 0.
        schedule: overrides the recipe's alpha(t) ("linear", "cosine" or "exp").
        device: "cpu" or "cuda" (default: CUDA if available; under torchrun each rank its LOCAL_RANK-th GPU).
        checkpoint_dir: checkpoints (every `checkpoint_every` steps), metrics.csv and loss_curve.png; a rerun with the
            same folder resumes, on any number of processes.
        strategy: under torchrun, "auto" / "ddp" (a replica per rank) or "fsdp" (FSDP2: parameters, gradients and
            optimizer state sharded across ranks, for models whose training state does not fit one GPU).
        report_to: ("tensorboard",) and / or ("wandb",), when installed.

    Under torchrun (WORLD_SIZE > 1) the process group is initialised here (NCCL on CUDA, gloo on CPU) unless it
    already is; each rank trains on its rows of every global batch. Rank 0 returns the model, in eval mode (on CPU
    after FSDP); the other ranks return None. The run's figures and the fold's verification are recorded for the
    model card (`hooked_bilinear.save_pretrained`).

    Returns:
        The bilinear `LlamaForCausalLM` (`hidden_act: "linear"`, the gate scale folded into gate_proj) on rank 0;
        None on the other ranks.

    Raises:
        ConversionError: the model is not a LlamaForCausalLM, is already bilinear, or has another activation.
        DatasetError: token ids outside the vocabulary, or a corpus that cannot be read.
        ValueError: an anneal_fraction outside (0, 1].

    Examples:
        A tiny random SwiGLU Llama, a few steps on random token ids (a real run takes a pretrained model and a
        corpus; see the "Making bilinear models" page):

        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> import hooked_bilinear as hb
        >>> config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        ...                      num_attention_heads=2, num_key_value_heads=2, hidden_act="silu")
        >>> swiglu = LlamaForCausalLM(config)
        >>> model = hb.bilinearize(swiglu, torch.randint(0, 64, (4096,)), steps=4, warmup_steps=1, batch_size=2,
        ...                        seq_len=16, progress=False)
        >>> type(model).__name__, model.config.hidden_act
        ('LlamaForCausalLM', 'linear')
    """
    chosen = get_recipe(recipe)
    anneal_fraction = chosen.anneal_fraction if anneal_fraction is None else anneal_fraction
    schedule = chosen.schedule if schedule is None else schedule
    if not 0.0 < anneal_fraction <= 1.0:
        raise ValueError(f"anneal_fraction={anneal_fraction} must lie in (0, 1].")
    base = (
        asdict(config)
        if config is not None
        else {"lr": chosen.lr, "weight_decay": chosen.weight_decay, "autocast": None if chosen.bf16 else False}
    )
    config = TrainConfig(**{**base, **train_options})
    config.check()
    model, name = load_swiglu_llama(model_or_path)
    config.check(model.config.max_position_embeddings)
    device = distributed_.device_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and FSDP2's device mesh use the current device
    initialized = distributed_.init_from_env(device.type)
    try:
        cache = (
            Path(data_cache)
            if data_cache is not None
            else (Path(checkpoint_dir) / "data" if checkpoint_dir is not None else _default_cache())
        )
        tokens = _load_data(data, model_or_path, tokenizer, config, cache)
        check_tokens(tokens, model.config.vocab_size, config.seq_len)
        result = _bilinearize(
            model,
            name,
            tokens,
            config,
            chosen,
            anneal_fraction,
            schedule,
            device,
            checkpoint_dir,
            strategy,
            report_to,
            progress,
        )
        if result is not None:  # save_pretrained / push_to_hub write the tokenizer the model came with
            attach_tokenizer(result, tokenizer if tokenizer is not None else _source_tokenizer(model_or_path))
        if initialized:  # no rank tears the group down while another still works in it
            distributed_.barrier()
        return result
    finally:
        if initialized:
            torch.distributed.destroy_process_group()


def _source_tokenizer(model_or_path: Any) -> Any:
    """The tokenizer of the model bilinearize started from: its folder's, or the one recorded on the model."""
    if isinstance(model_or_path, (str, os.PathLike)):
        from hooked_bilinear.loading.tokenizer import load_folder_tokenizer

        return load_folder_tokenizer(resolve_folder(model_or_path))
    return tokenizer_of(model_or_path)


def _default_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hooked_bilinear" / "corpus"


def _bilinearize(
    model: LlamaForCausalLM,
    name: str,
    tokens: Any,
    config: TrainConfig,
    recipe: Recipe,
    anneal_fraction: float,
    schedule: Schedule,
    device: torch.device,
    checkpoint_dir: str | os.PathLike[str] | None,
    strategy: Strategy,
    report_to: tuple[str, ...],
    progress: bool,
) -> LlamaForCausalLM | None:
    me = distributed_.session()
    kind = distributed_.resolve_strategy(strategy)
    torch.nn.Module.to(model, device)  # transformers' functools.wraps'd `to` hides its signature from mypy
    probe = probe_tokens(model.config.vocab_size, config.seq_len)
    # the source SwiGLU model's logits, for the card's distance from the source (a different figure from the fold check)
    source_logits = logits_of(model, probe).cpu() if me.main else None
    estimate = memory_estimate(model, config, me.world_size, kind)
    if me.main:
        logger.info(
            "bilinearize %s: %.1fM parameters; %d process%s (%s) on %s; recipe %s; estimated training memory per "
            "rank %s (%s)",
            name,
            sum(p.numel() for p in model.parameters()) / 1e6,
            me.world_size,
            "" if me.world_size == 1 else "es",
            kind,
            device.type,
            recipe.name,
            _format_bytes(estimate["total"]),
            ", ".join(f"{k} {_format_bytes(v)}" for k, v in estimate.items() if k != "total"),
        )
    d_hidden = model.config.intermediate_size if recipe.learnable_scale else None
    gates = [AnnealedGate(1.0, d_hidden).to(device) for _ in model.model.layers]
    for layer, gate in zip(model.model.layers, gates):
        layer.mlp.act_fn = gate
    anneal_steps = max(1, round(anneal_fraction * config.steps))

    def set_beta(step: int) -> dict[str, float]:
        beta = beta_at(step, anneal_steps, schedule)
        for gate in gates:
            gate.beta.fill_(beta)
        return {"beta": beta}

    settings = {
        "recipe": recipe.name,
        "schedule": schedule,
        "anneal_fraction": anneal_fraction,
        "learnable_scale": recipe.learnable_scale,
    }
    result: TrainResult = train(
        model,
        tokens,
        config,
        checkpoint_dir=checkpoint_dir,
        before_step=set_beta,
        tag="bilinearize",
        progress=progress,
        strategy=strategy,
        report_to=report_to,
        settings=settings,
    )
    if not isinstance(result.model, LlamaForCausalLM):  # other ranks
        return None
    model = result.model
    for layer in model.model.layers:
        layer.mlp.act_fn.beta.fill_(0.0)
    reference = copy.deepcopy(model)  # the annealed model at beta = 0, to verify the fold against
    fold_gate(model)
    difference = check_equal_logits(reference, model, probe, 1e-5, f"bilinearize({name}) fold")
    from_source = (logits_of(model, probe).cpu() - source_logits).abs() if source_logits is not None else None
    seconds = max(result.seconds, 1e-9)
    scale = "c * x * sigmoid(beta x) (learnable c)" if recipe.learnable_scale else "x * sigmoid(beta x)"
    attach(
        model,
        Provenance(
            source=name,
            conversion=(
                f"bilinearize (hooked_bilinear, recipe {recipe.name!r}): fine-tuned {config.steps} steps (global "
                f"batch {config.batch_size} x {config.seq_len} tokens, lr {config.lr:g}, weight decay "
                f"{config.weight_decay:g}, {me.world_size} process{'' if me.world_size == 1 else 'es'}) with the "
                f"MLP gate {scale}, beta annealed 1 -> 0 over {anneal_steps} steps ({schedule} schedule), then "
                f"the gate's factor at beta = 0 folded into gate_proj"
            ),
            base_model=name if "/" in name and not os.path.exists(name) else None,
            max_abs_logit_diff=difference,
            compared="the saved bilinear model (gate folded into gate_proj) against the fine-tuned model at beta = 0 "
            "before the fold: a check of the fold and export, NOT the distance from the source SwiGLU model (stated separately)",
            details={
                "max |logit difference| of this bilinear model against the source SwiGLU model (probe tokens)": (
                    None if from_source is None else f"{from_source.max().item():.3g}"
                ),
                "mean |logit difference| of this bilinear model against the source SwiGLU model (probe tokens)": (
                    None if from_source is None else f"{from_source.mean().item():.3g}"
                ),
                "final_train_loss": round(result.losses[-1], 4),
                "tokens_per_second": round(result.tokens_seen / seconds, 1),
                "peak_cuda_memory_bytes": result.peak_cuda_bytes,
                "estimated_memory_bytes_per_rank": estimate["total"],
                "processes": me.world_size,
            },
        ),
    )
    del reference
    return model.eval()
