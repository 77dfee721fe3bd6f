"""The model card (README.md) of a published model: Hub YAML metadata, then source, conversion and verification."""

from __future__ import annotations

from huggingface_hub import ModelCardData
from transformers import PreTrainedModel

from hooked_bilinear.publishing.provenance import Provenance

TAGS = ["bilinear", "transformer-lens", "hooked-bilinear", "interpretability"]


def _architecture(model: PreTrainedModel) -> str:
    c = model.config
    parts = [
        f"{type(model).__name__}",
        f"{c.num_hidden_layers} layers",
        f"d_model {c.hidden_size}",
        f"d_hidden {c.intermediate_size}",
        f"{c.num_attention_heads} heads",
    ]
    kv = getattr(c, "num_key_value_heads", None)
    if kv is not None and kv != c.num_attention_heads:
        parts.append(f"{kv} key/value heads")
    parts.append(f"vocab {c.vocab_size}")
    return ", ".join(parts)


def _mlp_description(model: PreTrainedModel, bilinear: bool) -> str:
    """What the card says the MLPs compute: bilinear, gated with an activation (GLU / SwiGLU), or plain (one input
    map and an activation, the tdooms format's `bilinear: false`)."""
    c = model.config
    if bilinear:
        return 'bilinear: `down_proj(gate_proj(x) * up_proj(x))`, no activation (`hidden_act: "linear"`)'
    if c.model_type == "llama":
        return f"gated: `down_proj(act(gate_proj(x)) * up_proj(x))`, activation {c.hidden_act!r}"
    if getattr(c, "bilinear", True):
        return f"gated: `W_out(act(W_gate x) * (W_in x))`, activation {c.gate!r}"
    return f"plain (not gated): `W_out(act(W_in x))`, activation {c.gate!r}"


def model_card(model: PreTrainedModel, name: str, provenance: Provenance | None) -> str:
    """README.md text: YAML front matter (library_name, tags, base_model) and a body stating source, conversion,
    the measured max |logit difference| of the verification, and how to load the model."""
    stock = model.config.model_type == "llama"
    act = getattr(model.config, "hidden_act", None)
    bilinear = act == "linear" or getattr(model.config, "bilinear", False) and getattr(model.config, "gate", 1) is None
    tags = TAGS + ([model.config.model_type] if model.config.model_type else [])
    data = ModelCardData(
        library_name="transformers" if stock else "hooked-bilinear",
        tags=tags,
        base_model=provenance.base_model if provenance else None,
        pipeline_tag="text-generation",
    )
    if provenance is None:
        source = "not recorded"
        conversion = "not recorded"
        verification = "not verified by hooked_bilinear (no conversion record)."
    else:
        source, conversion = provenance.source, provenance.conversion
        verification = (
            "not measured."
            if provenance.max_abs_logit_diff is None
            else f"max |logit difference| of {provenance.compared}, on probe tokens: "
            f"{provenance.max_abs_logit_diff:.3g}."
        )
    mlp = _mlp_description(model, bilinear)
    if stock:
        load = (
            f"```python\nfrom transformers import AutoModelForCausalLM\n\nmodel = AutoModelForCausalLM.from_pretrained("
            f'"{name}")\n\n# as a TransformerLens hooked transformer (MLPs as HookedBilinearMLP):\nimport '
            f'hooked_bilinear as hb\n\nbridge = hb.from_pretrained("{name}")\n```'
        )
    else:
        load = f'```python\nimport hooked_bilinear as hb\n\nbridge = hb.from_pretrained("{name}")\n```'
    if stock and bilinear:
        load += (
            "\n\n**TransformerLens users:** stock `TransformerBridge.boot_transformers` runs this model exactly in its "
            "default mode, but `bridge.enable_compatibility_mode()` (with its weight processing) hands each MLP to "
            'TransformerLens\'s own gated MLP, which computes SiLU for the activation name `"linear"` it does not '
            "know: wrong logits, with no error. `hooked_bilinear.from_pretrained` loads it exactly in both modes, "
            "each MLP a `HookedBilinearMLP` (`hook_pre`, `hook_pre_linear`, `hook_post`):\n\n"
            f'```python\nimport hooked_bilinear as hb\n\nbridge = hb.from_pretrained("{name}", '
            f"compatibility_mode=True)\n```"
        )
    extra = "".join(f"- {key}: {value}\n" for key, value in (provenance.details if provenance else {}).items())
    return (
        f"---\n{data.to_yaml()}\n---\n\n# {name}\n\n"
        f"A language model whose MLPs are {mlp}.\n\n"
        f"- Architecture: {_architecture(model)}\n"
        f"- Source: {source}\n"
        f"- Conversion: {conversion}\n"
        f"- Verification: {verification}\n{extra}\n"
        f"## Loading\n\n{load}\n\n"
        f"Published with hooked-bilinear, which loads bilinear models as TransformerLens "
        f"hooked transformers with weight-space analyses (interaction matrices, eigendecompositions).\n"
    )
