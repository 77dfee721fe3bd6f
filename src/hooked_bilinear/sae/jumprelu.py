"""JumpReLU SAE (Gemma Scope; SAELens architecture "jumprelu"): `f = relu(pre) * (pre > threshold)`, per feature."""

from __future__ import annotations

import torch
from torch import nn

from hooked_bilinear.sae.base import SAE


class JumpReLUSAE(SAE):
    """A feature is on only where its pre-activation exceeds its own `threshold` [d_sae]; then it is `relu(pre)`."""

    architecture = "jumprelu"

    def add_parameters(self) -> None:
        self.threshold = nn.Parameter(torch.zeros(self.d_sae, dtype=self.dtype, device=self.device))

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu() * (pre > self.threshold).to(pre.dtype)
