"""CacheCompatibleAttentionBridge hands TransformerLens the KV cache under either name transformers uses."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.model_bridge.generalized_components.position_embeddings_attention import (
    PositionEmbeddingsAttentionBridge,
)

from hooked_bilinear.components.cache_compatible_attention import CacheCompatibleAttentionBridge


@pytest.mark.parametrize(
    "given, expected",
    [
        (dict(cache="C"), dict(past_key_values="C")),  # transformers >= 5.24
        (dict(past_key_values="P"), dict(past_key_values="P")),  # the older name, as it is
        (dict(past_key_values="P", cache="C"), dict(past_key_values="P", cache="C")),  # the older name wins
        (dict(past_key_values=None, cache="C"), dict(past_key_values="C")),
        (dict(other=1), dict(other=1)),  # no cache at all: nothing added
    ],
)
def test_the_cache_reaches_the_parent_under_its_name(monkeypatch, given, expected):
    seen = []

    def parent(self, k, v, **kwargs):
        seen.append(kwargs)
        return k, v

    monkeypatch.setattr(PositionEmbeddingsAttentionBridge, "_update_kv_cache", parent)
    attention = object.__new__(CacheCompatibleAttentionBridge)
    k, v = torch.ones(1), torch.zeros(1)
    assert attention._update_kv_cache(k, v, **given) == (k, v)
    assert seen == [expected]
