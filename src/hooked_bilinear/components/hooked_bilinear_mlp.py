"""HookedBilinearMLP: the bilinear MLP as a TransformerLens 4 generalized component.

    out = W_out((W_gate x + b_gate) * (W_in x + b_in)) + b_out        (no activation anywhere)

Hooks (as on any TransformerLens MLP): `hook_in` (x), `hook_pre` (the gate / LEFT side `W_gate x + b_gate`),
`hook_pre_linear` (the RIGHT side `W_in x + b_in`), `hook_post` (their product) and `hook_out`.

The same forward runs in raw and in compatibility mode, so no path can fall back to an activation function (stock
TransformerLens 4.3 resolves an unknown activation name to SiLU in compatibility mode). This bridge takes separate
`gate` / `in` / `out` submodules (the Llama form: gate_proj, up_proj, down_proj); `FusedHookedBilinearMLP`
(fused_hooked_bilinear_mlp.py) changes only that: one fused projection, split by TransformerLens's own splitter.

The weight-space analyses of the papers are methods (they read the current weights, so in compatibility mode they
describe the processed weights that the hooks see): `interaction_matrix(u)`, `eigendecompose(u, k)`, `tensor()`,
`decompose(x, u)`, `hosvd(r)`, `truncate(basis, k)`, `feature_interactions(sae, u)`, shared with every bilinear layer through
`hooked_bilinear.analysis.methods.BilinearAnalysisMethods`; their math is in `hooked_bilinear.analysis`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from transformer_lens.model_bridge.generalized_components.gated_mlp import GatedMLPBridge

from hooked_bilinear.analysis.methods import BilinearAnalysisMethods


class HookedBilinearMLP(BilinearAnalysisMethods, GatedMLPBridge):
    """Bilinear MLP bridge over separate `gate`, `in` and `out` projections (Llama's gate_proj, up_proj, down_proj):
    `W_out((W_gate x + b_gate) * (W_in x + b_in)) + b_out`, exact in every mode. `FusedHookedBilinearMLP` is the same
    over one fused projection.

    Weights in TransformerLens orientation: `W_gate`, `W_in` [d_model, d_hidden]; `W_out` [d_hidden, d_model];
    `b_gate`, `b_in` [d_hidden]; `b_out` [d_model] (None when the checkpoint has no biases).
    """

    is_bilinear = True

    hook_aliases = {
        "hook_pre": "gate.hook_out",
        "hook_pre_linear": "in.hook_out",
        "hook_post": "out.hook_in",
    }

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
