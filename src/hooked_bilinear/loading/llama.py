"""Llama-family checkpoints (FORMATS.md section 4): a stock `LlamaForCausalLM` folder -> a TransformerLens bridge.

A bilinear Llama is a `LlamaForCausalLM` whose config says `"hidden_act": "linear"`: transformers then computes
`down_proj(gate_proj(x) * up_proj(x))`. Its MLPs become `HookedBilinearMLP`s (gate_proj = W_gate, up_proj = W_in,
down_proj = W_out), exact in raw and compatibility mode. A SwiGLU Llama (`"silu"`) keeps TransformerLens's gated MLP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.architecture_adapter import ArchitectureAdapter
from transformer_lens.model_bridge.generalized_components import LinearBridge
from transformer_lens.model_bridge.sources import build_bridge_from_module
from transformers import LlamaConfig, LlamaForCausalLM

from hooked_bilinear.components.hooked_bilinear_mlp import HookedBilinearMLP
from hooked_bilinear.errors import CheckpointWeightsError

LLAMA_ARCHITECTURE = "LlamaForCausalLM"
BILINEAR_ACT = "linear"  # transformers' name for the identity activation


def is_llama_config(raw: dict[str, Any]) -> bool:
    """Whether a config.json dict describes a Llama-family checkpoint (model_type "llama")."""
    return raw.get("model_type") == "llama"


def is_bilinear_llama(config: LlamaConfig) -> bool:
    """Whether a Llama config's MLP is bilinear (`hidden_act: "linear"`: no activation on the gate)."""
    return config.hidden_act == BILINEAR_ACT


def load_llama(folder: Path, dtype: torch.dtype) -> LlamaForCausalLM:
    """A `LlamaForCausalLM` (eval mode) from a folder; every weight must be present and fit (no random fill-in)."""
    try:
        model, info = LlamaForCausalLM.from_pretrained(str(folder), dtype=dtype, output_loading_info=True)
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointWeightsError(f"{folder} could not be loaded as a LlamaForCausalLM ({error}).") from error
    problems = {k: sorted(v) for k, v in info.items() if k != "error_msgs" and v}
    if problems or info.get("error_msgs"):
        raise CheckpointWeightsError(
            f"The weights in {folder} do not fit its config.json ({problems or info['error_msgs']}); transformers "
            f"would fill the gaps with random values. Check that config.json belongs to these weights."
        )
    return model.eval()


def _bilinear_mlps(adapter: ArchitectureAdapter) -> None:
    """Replace the adapter's gated MLP by a HookedBilinearMLP over gate_proj / up_proj / down_proj."""
    blocks = adapter.component_mapping["blocks"]
    old = blocks.submodules["mlp"]
    blocks.submodules["mlp"] = HookedBilinearMLP(
        name=old.name,
        config=adapter.cfg,
        fused_attr=None,
        submodules={
            "gate": LinearBridge(name="gate_proj"),
            "in": LinearBridge(name="up_proj"),
            "out": LinearBridge(name="down_proj"),
        },
    )


def llama_bridge(
    model: LlamaForCausalLM, tokenizer: Any, dtype: torch.dtype, device: str, model_name: str
) -> TransformerBridge:
    """The TransformerBridge of a Llama model; bilinear MLPs become HookedBilinearMLPs."""
    hook: Optional[Any] = _bilinear_mlps if is_bilinear_llama(model.config) else None
    return build_bridge_from_module(
        model,
        LLAMA_ARCHITECTURE,
        hf_config=model.config,
        tokenizer=tokenizer,
        dtype=dtype,
        device=device,
        model_name=model_name,
        post_adapter_hook=hook,
    )
