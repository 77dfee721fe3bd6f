"""HookedBilinearMLP: the bilinear MLP as a TransformerLens 4 generalized component.

    out = W_out((W_gate x + b_gate) * (W_in x + b_in)) + b_out        (no activation anywhere)

Hooks (as on any TransformerLens MLP): `hook_in` (x), `hook_pre` (the gate / LEFT side `W_gate x + b_gate`),
`hook_pre_linear` (the RIGHT side `W_in x + b_in`), `hook_post` (their product) and `hook_out`.

The same forward runs in raw and in compatibility mode, so no path can fall back to an activation function (stock
TransformerLens 4.3 resolves an unknown activation name to SiLU in compatibility mode). The checkpoint's fused
projection `w` [2 d_hidden, d_model] is split into two Linear views: rows [0, d_hidden) are `gate`, the rest `in`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent
from transformer_lens.model_bridge.generalized_components.joint_gate_up_mlp import JointGateUpMLPBridge


class HookedBilinearMLP(JointGateUpMLPBridge):
    """Bilinear MLP bridge: `W_out((W_gate x + b_gate) * (W_in x + b_in)) + b_out`, exact in every mode.

    Weights in TransformerLens orientation: `W_gate`, `W_in` [d_model, d_hidden]; `W_out` [d_hidden, d_model];
    `b_gate`, `b_in` [d_hidden]; `b_out` [d_model] (None when the checkpoint has no biases).
    """

    hook_aliases = {
        "hook_pre": "gate.hook_out",
        "hook_pre_linear": "in.hook_out",
        "hook_post": "out.hook_in",
    }

    def __init__(
        self,
        name: str,
        config: Optional[Any] = None,
        submodules: Optional[Dict[str, GeneralizedComponent]] = None,
        fused_attr: str = "w",
        split_gate_up_matrix: Optional[Callable] = None,
    ) -> None:
        super().__init__(
            name,
            config,
            submodules=submodules,
            split_gate_up_matrix=split_gate_up_matrix,
            fused_attr=fused_attr,
        )

    def _resolve_activation_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """A bilinear layer has no activation; nothing may resolve one."""
        raise RuntimeError("HookedBilinearMLP has no activation function.")

    @jaxtyped(typechecker=beartype)
    def forward(  # type: ignore[override]
        self, x: Float[torch.Tensor, "batch pos d_model"], *args: Any, **kwargs: Any
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        """`hook_out(W_out(hook_pre(W_gate x + b_gate) * hook_pre_linear(W_in x + b_in)) + b_out)`.

        The gate/in/out LinearBridges hold the raw weights, or the processed ones once compatibility mode has
        folded weights into them, so one path serves both modes.
        """
        x = self.hook_in(x)
        pre = self.gate(x)
        pre_linear = getattr(self, "in")(x)
        out = self.out(pre * pre_linear)
        return self.hook_out(out)
