"""`to_llama`: a current-format tdooms checkpoint -> a stock `transformers.LlamaForCausalLM` (docs/formats.md section 4).

    q/k/v_proj  = rows of attn.qkv (all Q heads, then K, then V)      gate_proj = mlp.w rows [0, d_hidden)   (LEFT)
    o_proj      = s * attn.o, s = 1/sqrt(2 n_layer) folded in          up_proj   = mlp.w rows [d_hidden, 2 d_hidden)
    norms       = weight 1, eps 1e-8 (tdooms norms are weightless)     down_proj = mlp.p
    hidden_act  = "linear" (bilinear) or the GLU gate ("relu" / "silu" / "gelu"); untied lm_head; rotary theta 10000

Not representable (ConversionError says why): the legacy format (its norms carry a bias; Llama's RMSNorm has none, and
it has no attention scale to remove), `normalization: false` (Llama always normalizes) and plain MLPs (`bilinear:
false`: Llama's MLP is always gated). Those stay loadable with `hooked_bilinear.from_pretrained` in this package's class.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from beartype import beartype
from transformer_lens.model_bridge import TransformerBridge
from transformers import LlamaConfig, LlamaForCausalLM

from hooked_bilinear.errors import ConversionError, said
from hooked_bilinear.modeling.configuration import BilinearConfig, split_gate_in
from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.publishing.provenance import Provenance, attach
from hooked_bilinear.publishing.source import Source, attach_tokenizer, resolve_source
from hooked_bilinear.publishing.verify import check_equal_logits, probe_tokens


def representable(config: BilinearConfig) -> list[str]:
    """Why a tdooms config has no exact LlamaForCausalLM form (empty when it has one)."""
    reasons = []
    if config.checkpoint_format != "current":
        reasons.append("it is in the legacy format, whose RMSNorms carry a bias that Llama's RMSNorm cannot hold")
    if not config.normalization:
        reasons.append("normalization is false, and a Llama block always applies RMSNorm")
    if not config.bilinear:
        reasons.append("its MLP is plain (bilinear: false), and a Llama MLP is always gated")
    return reasons


def llama_config(config: BilinearConfig) -> LlamaConfig:
    """The LlamaConfig of a representable tdooms config."""
    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.d_hidden,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_head,
        head_dim=config.d_head,
        hidden_act=config.hidden_act,
        max_position_embeddings=config.n_ctx,
        rms_norm_eps=config.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        attention_bias=False,
        mlp_bias=config.bias,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )


def llama_state_dict(state: dict[str, torch.Tensor], config: BilinearConfig) -> dict[str, torch.Tensor]:
    """tdooms state dict (current format) -> LlamaForCausalLM state dict, with s folded into o_proj."""
    s = config.attn_residual_scale
    out = {
        "model.embed_tokens.weight": state["transformer.wte.weight"],
        "lm_head.weight": state["lm_head.weight"],
        "model.norm.weight": torch.ones(config.d_model, dtype=state["lm_head.weight"].dtype),
    }
    mlp_kinds = ["weight", "bias"] if config.bias else ["weight"]  # attention never has a bias (docs/formats.md)
    for i in range(config.n_layer):
        src, dst = f"transformer.h.{i}.", f"model.layers.{i}."
        q, k, v = state[f"{src}attn.qkv.weight"].chunk(3, dim=0)
        out |= {
            f"{dst}self_attn.q_proj.weight": q,
            f"{dst}self_attn.k_proj.weight": k,
            f"{dst}self_attn.v_proj.weight": v,
            f"{dst}self_attn.o_proj.weight": s * state[f"{src}attn.o.weight"],
        }
        for kind in mlp_kinds:
            left, right = split_gate_in(state[f"{src}mlp.w.{kind}"], dim=0)
            out |= {
                f"{dst}mlp.gate_proj.{kind}": left,
                f"{dst}mlp.up_proj.{kind}": right,
                f"{dst}mlp.down_proj.{kind}": state[f"{src}mlp.p.{kind}"],
            }
        for norm in ("input_layernorm", "post_attention_layernorm"):
            out[f"{dst}{norm}.weight"] = torch.ones_like(out["model.norm.weight"])
    return {key: value.contiguous().clone() for key, value in out.items()}


@beartype
def to_llama(model_or_path: Any, *, tolerance: float = 1e-5, processed_weights: bool = False) -> LlamaForCausalLM:
    """A stock LlamaForCausalLM computing the same logits as a current-format tdooms model (eval mode, float32).

    Args:
        model_or_path: a BilinearForCausalLM, a TransformerBridge of one from `hooked_bilinear.from_pretrained`, or
            what `from_pretrained` accepts (shipped name, folder, Hub id).
        tolerance: allowed max |logit difference| on probe tokens, relative to the logit scale (at least 1).
        processed_weights: convert a bridge whose weights went through TransformerLens's processing
            (`enable_compatibility_mode()`); without it such a bridge is refused.

    The measured difference and the source's tokenizer are recorded for `hooked_bilinear.save_pretrained`.

    Returns:
        The `LlamaForCausalLM` (gate_proj = W_gate, up_proj = W_in, `hidden_act` "linear" for a bilinear source).

    Raises:
        ConversionError: the legacy format, `normalization: false`, plain MLPs, a processed bridge without
            `processed_weights=True`, or logits that differ by more than `tolerance`.
    """
    held = model_or_path.original_model if isinstance(model_or_path, TransformerBridge) else model_or_path
    if isinstance(held, LlamaForCausalLM):
        raise ConversionError(
            "to_llama: this model is already a LlamaForCausalLM; publish it as it is with "
            "hooked_bilinear.save_pretrained(model, folder) (a bridge is accepted too)."
        )
    return convert(resolve_source(model_or_path, "to_llama", processed_weights), tolerance)


def convert(source: Source, tolerance: float = 1e-5) -> LlamaForCausalLM:
    """The LlamaForCausalLM of a tdooms Source, verified on probe tokens, with provenance and tokenizer attached."""
    name = source.name
    model = source.model
    if not isinstance(model, BilinearForCausalLM):
        raise ConversionError(
            f"to_llama converts the tdooms formats (BilinearForCausalLM); {name} is a {type(model).__name__}."
        )
    config = model.config
    reasons = representable(config)
    if reasons:
        raise ConversionError(
            f"{name} has no exact LlamaForCausalLM form: {'; '.join(reasons)}. Load it with "
            f"hooked_bilinear.from_pretrained, or publish it in this package's own class (BilinearForCausalLM): "
            f"{said('save_pretrained(..., as_llama=False)', 'hooked-bilinear save SOURCE OUT --as-llama False')}."
        )
    if model.dtype != torch.float32 or model.device.type != "cpu":  # never convert the caller's model in place
        model = copy.deepcopy(model)
        torch.nn.Module.to(model, device="cpu", dtype=torch.float32)  # transformers' wrapped `to` hides its signature
    llama = LlamaForCausalLM(llama_config(config)).eval()
    llama.load_state_dict(llama_state_dict(model.state_dict(), config), strict=True)
    tokens = probe_tokens(config.vocab_size, config.n_ctx)
    difference = check_equal_logits(model, llama, tokens, tolerance, f"to_llama({name})")
    weights = "TransformerLens-processed weights (fold_ln, centering) of " if source.processed else ""
    details: dict[str, Any] = {"probe_tokens": list(tokens.shape)}
    if source.bridge_difference is not None:
        details["max |logit difference| between the TransformerBridge and its copied model"] = (
            f"{source.bridge_difference:.3g}"
        )
    attach(
        llama,
        Provenance(
            source=weights + name,
            conversion="tdooms current format -> LlamaForCausalLM (hooked_bilinear.to_llama): q/k/v split from the fused "
            "qkv, attention scale 1/sqrt(2 n_layer) folded into o_proj, weightless RMSNorms as weight 1 "
            f"(eps {config.rms_norm_eps:g}), gate_proj = LEFT, up_proj = RIGHT, down_proj = P, "
            f"hidden_act {llama.config.hidden_act!r}",
            base_model=name if "/" in name and not os.path.exists(name) else None,
            max_abs_logit_diff=difference,
            details=details,
            compared="this LlamaForCausalLM against the source checkpoint it was converted from (the same function "
            "in another form: a check of the conversion)",
        ),
    )
    attach_tokenizer(llama, source.tokenizer)
    return llama
