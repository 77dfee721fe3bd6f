"""Verifying a conversion: the max |logit difference| of two causal LMs on the same probe tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Int

from hooked_bilinear.errors import ConversionError

Logits = Callable[[torch.Tensor], torch.Tensor]


def probe_tokens(vocab_size: int, n_ctx: int, batch: int = 2, seed: int = 0) -> Int[torch.Tensor, "batch pos"]:
    """Deterministic random tokens [batch, min(n_ctx, 64)] covering the vocabulary's range."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, min(n_ctx, 64)), generator=generator)


def logits_of(model: torch.nn.Module | Logits, tokens: torch.Tensor) -> torch.Tensor:
    """Float64 logits of a transformers model (`.logits`), a TransformerBridge, or any callable tokens -> logits.

    A module runs in eval mode and is handed back in the mode it came in (a caller's training run is not changed).
    """
    if isinstance(model, torch.nn.Module):
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out: Any = model(tokens.to(next(model.parameters()).device))
        finally:
            model.train(training)
    else:
        with torch.no_grad():
            out = model(tokens)
    logits = getattr(out, "logits", out)
    return logits.double().cpu()


def check_equal_logits(a: Any, b: Any, tokens: torch.Tensor, tolerance: float, what: str) -> float:
    """The max |logit difference|; ConversionError when it exceeds `tolerance` times the logits' scale."""
    reference = logits_of(a, tokens)
    difference = (logits_of(b, tokens) - reference).abs().max().item()
    scale = max(1.0, reference.abs().max().item())
    if not difference <= tolerance * scale:
        raise ConversionError(
            f"{what}: the converted model's logits differ from the source's by {difference:.3g} (max abs; allowed "
            f"{tolerance:g} x logit scale {scale:.3g}). The conversion is wrong for this model; nothing was kept."
        )
    return difference
