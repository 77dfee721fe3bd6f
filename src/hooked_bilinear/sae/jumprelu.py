"""JumpReLU SAE (Gemma Scope; SAELens architecture "jumprelu"): `f = relu(pre) * (pre > threshold)`, per feature."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hooked_bilinear.sae.base import SAE


class JumpReLUSAE(SAE):
    """A feature is on only where its pre-activation exceeds its own `threshold` [d_sae]; then it is `relu(pre)`."""

    architecture = "jumprelu"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        apply_b_dec_to_input: bool = True,
        metadata: dict[str, Any] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            d_in,
            d_sae,
            apply_b_dec_to_input=apply_b_dec_to_input,
            metadata=metadata,
            dtype=dtype,
            device=device,
        )
        self.threshold = nn.Parameter(torch.zeros(d_sae, dtype=self.dtype, device=self.device))

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu() * (pre > self.threshold).to(pre.dtype)
