"""What a user hands to publishing or `to_llama`: a TransformerBridge, a transformers model, or a folder / shipped
name / Hub id, reduced to the plain transformers model, the tokenizer it was loaded with, and a name for messages
and the card.

A bridge rewires its transformers model in place (every wrapped module's parameters sit under `_original_component`),
so its weights are copied into a fresh instance of the model's own class, and that copy is checked against the bridge
on probe tokens. After TransformerLens's weight processing (`enable_compatibility_mode()`), the bridge's weights are
no longer the checkpoint's; publishing them is refused unless asked for.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import PreTrainedModel

from hooked_bilinear.errors import ConversionError, option
from hooked_bilinear.loading.pretrained import load_model, resolve_folder
from hooked_bilinear.loading.tokenizer import find_tokenizer
from hooked_bilinear.publishing.verify import check_equal_logits, probe_tokens

WRAPPED = "_original_component."
TOKENIZER_ATTRIBUTE = "hooked_bilinear_tokenizer"


@dataclass
class Source:
    """The transformers model to publish or convert, its tokenizer (None: not known), and where it came from."""

    model: PreTrainedModel
    tokenizer: Any
    name: str
    processed: bool = False  # TransformerLens-processed weights (fold_ln, centering) rather than the checkpoint's
    bridge_difference: float | None = None  # max |logit difference| between the bridge and the copied model


def attach_tokenizer(model: Any, tokenizer: Any) -> None:
    """Record the tokenizer a model was loaded with (read back by save_pretrained / push_to_hub)."""
    setattr(model, TOKENIZER_ATTRIBUTE, tokenizer)


def tokenizer_of(model: Any) -> Any:
    """The tokenizer recorded on a model, or None."""
    return getattr(model, TOKENIZER_ATTRIBUTE, None)


def is_processed(bridge: TransformerBridge) -> bool:
    """Whether TransformerLens's weight processing (fold_ln, centering) has rewritten the bridge's weights."""
    return bool(getattr(bridge, "_weights_processed", False))


def bridge_model(bridge: TransformerBridge, processed_weights: bool, what: str) -> Source:
    """A plain copy of the transformers model inside `bridge` (same class, config and weights), checked against the
    bridge's logits on probe tokens. `what` names the calling function in messages."""
    name = str(getattr(bridge.cfg, "model_name", "") or "a TransformerBridge")
    processed = is_processed(bridge)
    if processed and not processed_weights:
        raise ConversionError(
            f"{what}: the bridge of {name} went through TransformerLens's weight processing "
            f"(enable_compatibility_mode(): fold_ln, centering), so its weights are no longer the checkpoint's. "
            f"Pass the checkpoint itself ({name!r}) or a bridge from hooked_bilinear.from_pretrained without "
            f"compatibility mode; or pass {option('processed_weights')} to publish the processed weights."
        )
    wrapped = bridge.original_model
    if not isinstance(wrapped, PreTrainedModel):
        raise ConversionError(
            f"{what}: the bridge of {name} wraps a {type(wrapped).__name__}, not a transformers "
            f"model; pass the checkpoint folder or name instead of the bridge."
        )
    state = {key.replace(WRAPPED, ""): value for key, value in wrapped.state_dict().items()}
    plain = type(wrapped)(copy.deepcopy(wrapped.config))
    wanted = plain.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise ConversionError(
            f"{what}: the bridge of {name} holds no weights for {missing[:5]}; pass the checkpoint "
            f"folder or name instead of the bridge."
        )
    plain.load_state_dict({key: state[key] for key in wanted}, strict=True)
    reference = next(wrapped.parameters())  # same device and dtype as the bridge, so the check compares like with like
    torch.nn.Module.to(plain, device=reference.device, dtype=reference.dtype)  # transformers' `to` hides its signature
    plain.eval()
    tokens = probe_tokens(plain.config.vocab_size, _context(plain.config))
    difference = check_equal_logits(bridge, plain, tokens, 1e-5, f"{what}: copying the model out of the bridge")
    return Source(plain, bridge.tokenizer, name, processed, difference)


def _context(config: Any) -> int:
    return int(getattr(config, "n_ctx", None) or getattr(config, "max_position_embeddings", None) or 64)


def resolve_source(model: Any, what: str, processed_weights: bool = False, revision: str | None = None) -> Source:
    """A Source from a TransformerBridge, a transformers model, or a folder / shipped name / Hub id."""
    if isinstance(model, TransformerBridge):
        return bridge_model(model, processed_weights, what)
    if isinstance(model, PreTrainedModel):
        name = str(getattr(model.config, "name_or_path", "") or f"a {type(model).__name__}")
        return Source(model, tokenizer_of(model), name)
    if isinstance(model, (str, os.PathLike)):
        folder = resolve_folder(model, revision)
        loaded = load_model(folder)
        tokenizer, _ = find_tokenizer(folder, loaded.config)
        return Source(loaded, tokenizer, str(model))
    raise ConversionError(
        f"{what} takes a TransformerBridge from hooked_bilinear.from_pretrained, a transformers model, or a "
        f"checkpoint's folder / shipped name / Hub id, not {type(model).__name__}."
    )
