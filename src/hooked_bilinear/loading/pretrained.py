"""`from_pretrained`: a shipped name, a local folder or a Hub id -> a TransformerLens 4 `TransformerBridge`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
from beartype import beartype
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources import build_bridge_from_module
from transformers import LlamaForCausalLM

from hooked_bilinear.errors import CheckpointFormatError, CheckpointNotFoundError
from hooked_bilinear.loading.adapter import ARCHITECTURE, bridge_config
from hooked_bilinear.loading.checkpoint import read_checkpoint
from hooked_bilinear.loading.hub import hub_snapshot
from hooked_bilinear.loading.llama import is_llama_config, llama_bridge, load_llama
from hooked_bilinear.loading.shipped import loader_hint
from hooked_bilinear.loading.tokenizer import resolve_tokenizer
from hooked_bilinear.modeling.files import read_config
from hooked_bilinear.modeling.modeling import BilinearForCausalLM

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@beartype
def shipped_checkpoints() -> list[str]:
    """Short names of the checkpoints shipped inside the package (loadable by `from_pretrained(name)`).

    Returns:
        The names, sorted (e.g. "modadd-p113", "modadd-p59", "ts-synthetic-2l").
    """
    return sorted(p.name for p in CHECKPOINTS.iterdir() if (p / "config.json").is_file())


def resolve_folder(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder for a shipped name (no slash), an existing directory, or a Hub id (via its cache)."""
    path = Path(name_or_path)
    text = str(name_or_path)
    if path.is_dir():
        return path
    if "/" not in text and (CHECKPOINTS / text / "config.json").is_file():
        return CHECKPOINTS / text
    hint = loader_hint(text, "language model")
    if hint or "/" not in text or path.is_absolute() or text.startswith("."):
        raise CheckpointNotFoundError(
            f"{hint}{text!r} is neither a shipped checkpoint ({', '.join(shipped_checkpoints())}), an existing folder, "
            f"nor a Hub id of the form 'owner/name'."
        )
    return hub_snapshot(text, revision)


def _device(device: str | torch.device | None) -> str:
    """The device name, CPU by default; CUDA asked for on a machine without it is an error, not a fallback."""
    name = str(device or "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={name!r} was asked for, but this machine has no CUDA device (torch "
            f"{torch.__version__}); pass device='cpu', or install a CUDA build of torch on a GPU machine."
        )
    return name


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {sorted(DTYPES)}.")
    return DTYPES[dtype]


@beartype
def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    checkpoint_format: Literal["current", "legacy"] | None = None,
    allow_non_finite: bool = False,
) -> BilinearForCausalLM | LlamaForCausalLM:
    """The plain transformers model of a checkpoint (eval mode): `BilinearForCausalLM` for the tdooms formats,
    `LlamaForCausalLM` for a Llama folder. Every weight is checked against config.json (names, shapes, finite values).

    Args:
        name_or_path: a shipped short name, a local folder or a Hub id, as in `from_pretrained`.
        device: e.g. "cpu", "cuda"; default CPU.
        dtype: float32 (default), bfloat16, float16 (torch dtype or its name).
        revision: Hub revision (branch, tag or commit).
        checkpoint_format: force "current" or "legacy" instead of detecting it from config.json.
        allow_non_finite: load NaN / inf weights with a warning instead of refusing them (for debugging).

    Returns:
        The model in eval mode: a `BilinearForCausalLM` (tdooms formats) or a `LlamaForCausalLM`.

    Raises:
        CheckpointNotFoundError: no such shipped name or folder, or a Hub id that cannot be fetched.
        CheckpointFormatError: config.json is not one of the supported formats (its message names the key).
        CheckpointWeightsError: a weight is missing, misshapen, not floating point or not finite.

    Examples:
        >>> import hooked_bilinear as hb
        >>> model = hb.load_model("modadd-p59")
        >>> type(model).__name__, model.config.modular_addition["p"]
        ('BilinearForCausalLM', 59)
    """
    folder = resolve_folder(name_or_path, revision)
    torch_dtype = _dtype(dtype)
    device_name = _device(device)
    raw = read_config(folder)
    if is_llama_config(raw):
        if checkpoint_format is not None:
            raise CheckpointFormatError(
                f"checkpoint_format={checkpoint_format!r} applies to tdooms checkpoints; "
                f"{folder} holds a Llama checkpoint (model_type 'llama')."
            )
        llama = load_llama(folder, torch_dtype, allow_non_finite)
        torch.nn.Module.to(llama, device_name)  # transformers' functools.wraps'd `to` hides its signature from mypy
        return llama
    model = read_checkpoint(folder, raw, checkpoint_format, allow_non_finite)
    torch.nn.Module.to(model, device=device_name, dtype=torch_dtype)
    return model


@beartype
def from_pretrained(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    tokenizer: Any = None,
    revision: str | None = None,
    compatibility_mode: bool = False,
    checkpoint_format: Literal["current", "legacy"] | None = None,
    **kwargs: Any,
) -> TransformerBridge:
    """Load a bilinear transformer (tdooms formats, or a Llama with `hidden_act: "linear"`) as a hooked model.

    Args:
        name_or_path: a shipped short name (see `shipped_checkpoints()`), a local folder (never touches the
            network), or a Hub id 'owner/name' (through the huggingface_hub cache; honours HF_HUB_OFFLINE).
        device: e.g. "cpu", "cuda"; default CPU.
        dtype: float32 (default), bfloat16, float16 (torch dtype or its name).
        tokenizer: a tokenizer object, or its Hub id / folder; default: the folder's, else the one config.json
            names, else none (with a warning).
        revision: Hub revision (branch, tag or commit).
        compatibility_mode: apply TransformerLens's compatibility mode (legacy hook names, weight processing)
            without centering the unembedding, so logits stay those of the checkpoint. For HookedTransformer's full
            processing call `bridge.enable_compatibility_mode()` yourself: it shifts each position's logits by a
            constant (log-probabilities are unchanged).
        checkpoint_format: force "current" or "legacy" instead of detecting it from config.json.
        **kwargs: passed to `enable_compatibility_mode` when `compatibility_mode` is true.

    Returns:
        A `TransformerBridge` whose bilinear MLPs are `HookedBilinearMLP`s (a SwiGLU Llama keeps gated MLPs).

    Examples:
        >>> import hooked_bilinear as hb
        >>> model = hb.from_pretrained("ts-synthetic-2l")
        >>> logits, cache = model.run_with_cache("once upon a time")
        >>> logits.shape, cache["blocks.0.mlp.hook_post"].shape
        (torch.Size([1, 5, 330]), torch.Size([1, 5, 256]))
        >>> type(model.blocks[0].mlp).__name__
        'FusedHookedBilinearMLP'
    """
    folder = resolve_folder(name_or_path, revision)
    torch_dtype = _dtype(dtype)
    device = _device(device)
    model = load_model(folder, device=device, dtype=torch_dtype, checkpoint_format=checkpoint_format)
    tok = resolve_tokenizer(tokenizer, folder, model.config)
    if isinstance(model, LlamaForCausalLM):
        bridge = llama_bridge(model, tok, torch_dtype, device, str(name_or_path))
    else:
        bridge = build_bridge_from_module(
            model,
            ARCHITECTURE,
            tl_config=bridge_config(model.config, torch_dtype, str(name_or_path)),
            tokenizer=tok,
            dtype=torch_dtype,
            device=device,
            model_name=str(name_or_path),
        )
    if compatibility_mode:
        kwargs.setdefault("center_unembed", False)
        bridge.enable_compatibility_mode(**kwargs)
    elif kwargs:
        raise TypeError(f"from_pretrained got unexpected keyword arguments {sorted(kwargs)}.")
    return bridge
