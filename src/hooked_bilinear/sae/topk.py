"""TopK SAE (Gao et al.; the papers' SAEs): keep the k largest pre-activations, ReLU them, zero the rest."""

from __future__ import annotations

from typing import Any

import torch

from hooked_bilinear.errors import SAEError
from hooked_bilinear.sae.base import SAE

DEFAULT_K = 30
DEFAULT_EXPANSION = 4


class TopKSAE(SAE):
    """`f = relu(topk_k(pre(x)))`: the k largest pre-activations kept (then ReLU, as SAELens), the rest zero."""

    architecture = "topk"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        k: int = DEFAULT_K,
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
        if not 1 <= k <= d_sae:
            raise SAEError(f"TopK SAE needs 1 <= k <= d_sae={d_sae}, got k={k}.")
        self.k = int(k)

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu())

    def architecture_cfg(self) -> dict[str, Any]:
        return {"k": self.k, "rescale_acts_by_decoder_norm": False}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}"
