"""RotaryHookedAttentionBridge: fused-qkv rotary attention whose rotated queries and keys fire their hooks.

TransformerLens 4.3's JointQKVPositionEmbeddingsAttentionBridge registers `hook_rot_q` / `hook_rot_k` but never calls
them; its Llama bridge does. Firing them after the rotation gives tdooms bridges the same cache entries
(`blocks.{l}.attn.hook_rot_q` / `hook_rot_k`, [batch, pos, head, d_head]).
"""

from __future__ import annotations

import torch
from transformer_lens.model_bridge.generalized_components import JointQKVPositionEmbeddingsAttentionBridge


class RotaryHookedAttentionBridge(JointQKVPositionEmbeddingsAttentionBridge):
    """JointQKVPositionEmbeddingsAttentionBridge that runs the rotated q and k through hook_rot_q / hook_rot_k."""

    def _apply_rotary_pos_emb(
        self, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, k = super()._apply_rotary_pos_emb(q, k, cos, sin)
        return self.hook_rot_q(q), self.hook_rot_k(k)
