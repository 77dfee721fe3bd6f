"""The standard (ReLU) SAE: `f = relu(pre(x))` (SAELens architecture "standard")."""

from __future__ import annotations

import torch

from hooked_bilinear.sae.base import SAE


class ReLUSAE(SAE):
    """`f = relu((x - b_dec) W_enc + b_enc)`."""

    architecture = "standard"

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu()
