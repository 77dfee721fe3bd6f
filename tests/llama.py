"""Tiny random Llama checkpoints (docs/formats.md section 4) for the tests: stock transformers classes, saved folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

TINY = dict(
    vocab_size=330,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    tie_word_embeddings=False,
    rms_norm_eps=1e-5,
)


def tiny_llama(hidden_act: str = "linear", seed: int = 0, std: float = 0.15, **overrides: Any) -> LlamaForCausalLM:
    """A random LlamaForCausalLM (GQA: 4 heads, 2 kv heads) with weights of standard deviation `std`."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY, "hidden_act": hidden_act, **overrides})).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)  # non-trivial RMSNorm weights, so folding them is tested
            else:
                parameter.normal_(0.0, std)
    return model


def write_llama(folder: Path, hidden_act: str = "linear", **kwargs: Any) -> tuple[Path, LlamaForCausalLM]:
    """Save a tiny random Llama to `folder` (config.json + model.safetensors) and return it."""
    model = tiny_llama(hidden_act, **kwargs)
    model.save_pretrained(folder)
    return folder, model
