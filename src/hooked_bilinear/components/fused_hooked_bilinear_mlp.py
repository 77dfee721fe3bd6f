"""FusedHookedBilinearMLP: HookedBilinearMLP over one fused projection (the tdooms `w` [2 d_hidden, d_model]).

TransformerLens's JointGateUpMLPBridge splits the fused projection into two Linear views, rows [0, d_hidden) as
`gate` (W_gate, the left half) and the rest as `in` (W_in), which is the tdooms order (docs/formats.md section 1).
"""

from __future__ import annotations

from typing import Any

from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent
from transformer_lens.model_bridge.generalized_components.joint_gate_up_mlp import JointGateUpMLPBridge

from hooked_bilinear.components.hooked_bilinear_mlp import HookedBilinearMLP


class FusedHookedBilinearMLP(HookedBilinearMLP, JointGateUpMLPBridge):
    """The bilinear forward and analyses of HookedBilinearMLP; the fused split of JointGateUpMLPBridge."""

    def __init__(self, name: str, config: Any, submodules: dict[str, GeneralizedComponent], fused_attr: str) -> None:
        JointGateUpMLPBridge.__init__(self, name, config, submodules=submodules, fused_attr=fused_attr)
