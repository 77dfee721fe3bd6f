"""`BilinearConfig`: the tdooms bilinear-transformer config, and format detection from config.json.

Two on-disk formats exist (see docs/formats.md sections 1 and 2):

- "current" (Oct 2024 on): keys `bias`, `tokenizer`, `gate` in {null, "relu", "silu", "gelu"}, weightless RMSNorm,
  attention output scaled by `1 / sqrt(2 * n_layer)`, MLP down projection named `p`.
- "legacy" (May-Sept 2024): key `n_vocab`, `gate` a bool (true = ReLU), RMSNorm with weight and bias, no attention
  scale, MLP down projection named `o`, no biases on Linears.

tdooms dumps carry an empty or missing `model_type`; `detect_format` tells them apart from the keys alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from beartype import beartype
from transformers import PretrainedConfig

from hooked_bilinear.errors import CheckpointFormatError

MODEL_TYPE = "tdooms_bilinear"
FORMATS = ("current", "legacy")
GATES = (None, "relu", "silu", "gelu")
TOKENIZER_REPOS = {
    "ts-4096": "tdooms/ts-tokenizer-4096",
    "ss-4096": "tdooms/ss-tokenizer-4096",
    "mistral": "mistral-community/Mixtral-8x22B-v0.1",
    "gpt2": "openai-community/gpt2",
}
BILINEAR_ACT = "linear"  # transformers' / TransformerLens's name for the identity activation of a bilinear MLP
_SIZE_KEYS = ("n_layer", "n_head", "d_model", "d_hidden", "n_ctx")
_BOOL_KEYS = ("bilinear", "bias", "normalization")


class BilinearConfig(PretrainedConfig):
    """Config of a tdooms bilinear (or GLU / plain-MLP baseline) transformer.

    `vocab_size` is not in tdooms config.json files: the loader reads it off `transformer.wte.weight`.
    """

    model_type = MODEL_TYPE
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
        "intermediate_size": "d_hidden",
        "max_position_embeddings": "n_ctx",
    }

    def __init__(
        self,
        n_layer: int = 2,
        n_head: int = 4,
        d_model: int = 128,
        d_hidden: int = 512,
        n_ctx: int = 256,
        vocab_size: int = 4096,
        bilinear: bool = True,
        gate: str | None = None,
        bias: bool = False,
        normalization: bool = True,
        checkpoint_format: Literal["current", "legacy"] = "current",
        tokenizer: str | None = None,
        rms_norm_eps: float = 1e-8,
        rope_theta: float = 10000.0,
        **kwargs: Any,
    ) -> None:
        self.n_layer = n_layer
        self.n_head = n_head
        self.d_model = d_model
        self.d_hidden = d_hidden
        self.n_ctx = n_ctx
        self.vocab_size = vocab_size
        self.bilinear = bilinear
        self.gate = gate
        self.bias = bias
        self.normalization = normalization
        self.checkpoint_format = checkpoint_format
        self.tokenizer = tokenizer
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        kwargs.setdefault("tie_word_embeddings", False)
        # d_head is derived; it is stored as a plain attribute (not a property) because TransformerLens's generic
        # config mapping (boot_transformers) copies and assigns it. A saved config.json carries it: it must agree.
        saved_d_head = kwargs.pop("d_head", None)
        super().__init__(**kwargs)
        self.validate_values()
        self.d_head = d_model // n_head
        if saved_d_head is not None and saved_d_head != self.d_head:
            raise CheckpointFormatError(
                f"config value d_head={saved_d_head!r} contradicts d_model / n_head = "
                f"{self.d_head}; remove d_head from config.json or fix it."
            )

    @property
    def attn_residual_scale(self) -> float:
        """The constant `s` in `x + s * attn(n1(x))`: `1/sqrt(2 n_layer)` (current format), 1 (legacy)."""
        return 1.0 / math.sqrt(2 * self.n_layer) if self.checkpoint_format == "current" else 1.0

    @property
    def norm_has_params(self) -> bool:
        """Legacy RMSNorms carry a weight and a bias; current ones are weightless."""
        return self.normalization and self.checkpoint_format == "legacy"

    @property
    def hidden_act(self) -> str:
        """The MLP activation under transformers' name: "linear" for a bilinear layer (`gate: null`), else the gate."""
        return BILINEAR_ACT if self.gate is None else self.gate

    @property
    def mlp_down_name(self) -> str:
        """Attribute name of the MLP down projection: `p` (current) or `o` (legacy)."""
        return "p" if self.checkpoint_format == "current" else "o"

    def validate_values(self) -> None:
        """Raise CheckpointFormatError on values no checkpoint of these formats can have."""
        for key in _BOOL_KEYS:
            value = getattr(self, key)
            if not isinstance(value, bool):
                raise CheckpointFormatError(
                    f"config value {key}={value!r} must be true or false (a JSON boolean); fix it in config.json."
                )
        for key in ("rms_norm_eps", "rope_theta"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise CheckpointFormatError(f"config value {key}={value!r} must be a positive finite number.")
        if self.tokenizer is not None and not isinstance(self.tokenizer, str):
            raise CheckpointFormatError(
                f"config value tokenizer={self.tokenizer!r} must be null or a name such as {sorted(TOKENIZER_REPOS)}."
            )
        if self.checkpoint_format not in FORMATS:
            raise CheckpointFormatError(f"checkpoint_format={self.checkpoint_format!r} is not one of {FORMATS}.")
        if self.gate not in GATES:
            raise CheckpointFormatError(
                f"Unknown gate {self.gate!r}: expected null (bilinear, no activation) or one of "
                f"'relu', 'silu', 'gelu' (GLU variants). Fix `gate` in config.json."
            )
        for key in (*_SIZE_KEYS, "vocab_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise CheckpointFormatError(f"config value {key}={value!r} must be a positive integer.")
        if self.d_model % self.n_head != 0:  # before d_head is derived
            raise CheckpointFormatError(
                f"d_model={self.d_model} is not divisible by n_head={self.n_head}: every head needs "
                f"d_model / n_head dimensions. Fix d_model or n_head in config.json."
            )
        if (self.d_model // self.n_head) % 2 != 0:
            raise CheckpointFormatError(
                f"d_head = d_model / n_head = {self.d_model // self.n_head} is odd; rotary embeddings need an even "
                f"head size."
            )


@beartype
def split_gate_in(w: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused MLP projection `w` (weights along dim 0, activations along dim -1) as (W_gate part, W_in part): the
    gate is the first half in both tdooms formats."""
    gate, up = w.chunk(2, dim=dim)
    return gate, up


@beartype
def detect_format(config: Mapping[str, Any]) -> Literal["current", "legacy"]:
    """Which tdooms format a config.json dict is in, from its keys alone.

    Args:
        config: the parsed config.json.

    Returns:
        "current" or "legacy".

    Raises:
        CheckpointFormatError: it is neither (the message names the missing keys).
    """
    if config.get("model_type") == MODEL_TYPE:
        return config.get("checkpoint_format", "current")
    missing = [key for key in _SIZE_KEYS if key not in config]
    model_type = config.get("model_type") or None
    if missing or model_type is not None:
        found = f"model_type={model_type!r}, " if model_type else ""
        raise CheckpointFormatError(
            f"config.json matches no known checkpoint format ({found}missing {missing}). hooked_bilinear "
            f"loads tdooms bilinear transformers (keys {list(_SIZE_KEYS)} plus `bilinear`, `gate`) in their "
            f"current or legacy format; pass checkpoint_format='current' or 'legacy' to force one."
        )
    gate = config.get("gate")
    if "n_vocab" in config or isinstance(gate, bool) or "noise" in config:
        return "legacy"
    return "current"


def config_from_dict(
    raw: Mapping[str, Any],
    vocab_size: int,
    checkpoint_format: Literal["current", "legacy"] | None = None,
) -> BilinearConfig:
    """Build a BilinearConfig from a config.json dict of either format (detected unless forced)."""
    fmt = checkpoint_format or detect_format(raw)
    if fmt not in FORMATS:
        raise CheckpointFormatError(f"checkpoint_format={fmt!r} is not one of {FORMATS}.")
    missing = [key for key in _SIZE_KEYS if key not in raw]
    if missing:
        raise CheckpointFormatError(f"config.json lacks {missing}, needed by the {fmt} format.")
    gate = raw.get("gate")
    if fmt == "legacy":
        if not isinstance(gate, (bool, type(None))):
            raise CheckpointFormatError(
                f"legacy-format `gate` must be true/false (true = ReLU on the left half), found {gate!r}."
            )
        gate = "relu" if gate else None
        if "n_vocab" in raw and raw["n_vocab"] != vocab_size:
            raise CheckpointFormatError(
                f"config.json says n_vocab={raw['n_vocab']} but transformer.wte.weight has {vocab_size} rows."
            )
    elif not isinstance(gate, (str, type(None))):
        raise CheckpointFormatError(f"Unknown gate {gate!r}: the current format takes null, 'relu', 'silu' or 'gelu'.")
    return BilinearConfig(
        n_layer=raw["n_layer"],
        n_head=raw["n_head"],
        d_model=raw["d_model"],
        d_hidden=raw["d_hidden"],
        n_ctx=raw["n_ctx"],
        vocab_size=vocab_size,
        bilinear=raw.get("bilinear", True),
        gate=gate,
        bias=raw.get("bias", False) if fmt == "current" else False,
        normalization=raw.get("normalization", True),
        checkpoint_format=fmt,
        tokenizer=raw.get("tokenizer") if fmt == "current" else f"tdooms/TinyStories-{vocab_size}",
    )
