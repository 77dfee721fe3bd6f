"""CacheCompatibleAttentionBridge: Llama-family attention that finds the KV cache under either of its names.

transformers 5.24 passes the cache to attention as `cache=`; TransformerLens 4.3's attention bridges read only
`past_key_values` / `layer_past`, so every KV-cached decoding step attended to itself alone.
"""

from __future__ import annotations

from typing import Any

import torch
from transformer_lens.model_bridge.generalized_components.position_embeddings_attention import (
    PositionEmbeddingsAttentionBridge,
)


class CacheCompatibleAttentionBridge(PositionEmbeddingsAttentionBridge):
    """PositionEmbeddingsAttentionBridge that also reads the KV cache from `cache=` (transformers >= 5.24)."""

    def _update_kv_cache(self, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
            kwargs["past_key_values"] = kwargs.pop("cache")
        return super()._update_kv_cache(k, v, **kwargs)
