"""Llama-family checkpoints (docs/formats.md section 4): a stock `LlamaForCausalLM` folder -> a TransformerLens bridge.

A bilinear Llama is a `LlamaForCausalLM` whose config says `"hidden_act": "linear"`: transformers then computes
`down_proj(gate_proj(x) * up_proj(x))`. Its MLPs become `HookedBilinearMLP`s (gate_proj = W_gate, up_proj = W_in,
down_proj = W_out), exact in raw and compatibility mode. A SwiGLU Llama (`"silu"`) keeps TransformerLens's gated MLP.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, cast

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.generalized_components import GatedMLPBridge, LinearBridge
from transformer_lens.model_bridge.sources import build_bridge_from_module
from transformer_lens.model_bridge.supported_architectures.llama import LlamaArchitectureAdapter
from transformers import LlamaForCausalLM

from hooked_bilinear.components.cache_compatible_attention import CacheCompatibleAttentionBridge
from hooked_bilinear.components.hooked_bilinear_mlp import HookedBilinearMLP
from hooked_bilinear.components.not_bilinear_mlp import GatedNotBilinearMLP
from hooked_bilinear.errors import CheckpointWeightsError
from hooked_bilinear.loading.checkpoint import check_finite_weights
from hooked_bilinear.modeling.configuration import BILINEAR_ACT

LLAMA_ARCHITECTURE = "LlamaForCausalLM"
BILINEAR_LLAMA_ARCHITECTURE = "HookedBilinearLlamaForCausalLM"  # this package's adapter name for Llama checkpoints


def is_llama_config(raw: dict[str, Any]) -> bool:
    """Whether a config.json dict describes a Llama-family checkpoint (model_type "llama")."""
    return raw.get("model_type") == "llama"


def load_llama(folder: Path, dtype: torch.dtype, allow_non_finite: bool = False) -> LlamaForCausalLM:
    """A `LlamaForCausalLM` (eval mode) from a folder; every weight must be present, fit and be finite (no random
    fill-in, no NaN)."""
    try:
        # output_loading_info=True returns (model, info), which transformers' annotation does not say
        model, info = cast(
            tuple[LlamaForCausalLM, dict[str, Any]],
            LlamaForCausalLM.from_pretrained(str(folder), dtype=dtype, output_loading_info=True),
        )
    except (OSError, ValueError, KeyError, RuntimeError) as error:  # RuntimeError: weights misshapen for the config
        raise CheckpointWeightsError(f"{folder} could not be loaded as a LlamaForCausalLM ({error}).") from error
    problems = {k: sorted(v) for k, v in info.items() if k != "error_msgs" and v}
    if problems or info.get("error_msgs"):
        raise CheckpointWeightsError(
            f"The weights in {folder} do not fit its config.json ({problems or info['error_msgs']}); transformers "
            f"would fill the gaps with random values. Check that config.json belongs to these weights."
        )
    check_finite_weights(dict(model.state_dict()), folder, allow_non_finite)
    return model.eval()


class BilinearLlamaArchitectureAdapter(LlamaArchitectureAdapter):
    """TransformerLens's Llama adapter with two changes: a bilinear MLP (`hidden_act: "linear"`) is a
    HookedBilinearMLP over gate_proj / up_proj / down_proj (any other, TransformerLens's GatedMLPBridge with analysis
    methods that raise NotBilinearError), and attention reads the KV cache under transformers
    5.24's name `cache` too (CacheCompatibleAttentionBridge)."""

    _attention_bridge_cls = CacheCompatibleAttentionBridge

    def _gated_mlp(
        self,
        name: str = "mlp",
        *,
        gate: str = "gate_proj",
        up: str = "up_proj",
        down: str = "down_proj",
        optional: bool = False,
    ) -> GatedMLPBridge:
        mlp = HookedBilinearMLP if self.cfg.act_fn == BILINEAR_ACT else GatedNotBilinearMLP
        return mlp(
            name=name,
            config=self.cfg,
            submodules={"gate": LinearBridge(name=gate), "in": LinearBridge(name=up), "out": LinearBridge(name=down)},
            optional=optional,
        )


def llama_bridge(
    model: LlamaForCausalLM, tokenizer: Any, dtype: torch.dtype, device: str, model_name: str
) -> TransformerBridge:
    """The TransformerBridge of a Llama model; bilinear MLPs become HookedBilinearMLPs."""
    pass_cache_by_its_new_name(model)
    return build_bridge_from_module(
        model,
        BILINEAR_LLAMA_ARCHITECTURE,
        hf_config=model.config,
        tokenizer=tokenizer,
        dtype=dtype,
        device=device,
        model_name=model_name,
    )


def _renamed_cache(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    if "past_key_values" in kwargs and "cache" not in kwargs:
        kwargs["cache"] = kwargs.pop("past_key_values")
    return args, kwargs


def pass_cache_by_its_new_name(model: LlamaForCausalLM) -> None:
    """TransformerLens 4.3's `generate` hands the model its KV cache as `past_key_values`, which transformers >= 5.24
    deprecates for `cache` with a FutureWarning at every decoding step: rename it on the way in (a forward pre-hook),
    where the installed transformers reads `cache`. Idempotent."""
    if "cache" not in inspect.signature(type(model).forward).parameters:
        return
    if not any(hook is _renamed_cache for hook in model._forward_pre_hooks.values()):
        model.register_forward_pre_hook(_renamed_cache, with_kwargs=True)
