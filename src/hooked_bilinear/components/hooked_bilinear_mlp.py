"""HookedBilinearMLP: the bilinear MLP as a TransformerLens 4 generalized component.

    out = W_out((W_gate x + b_gate) * (W_in x + b_in)) + b_out        (no activation anywhere)

Hooks (as on any TransformerLens MLP): `hook_in` (x), `hook_pre` (the gate / LEFT side `W_gate x + b_gate`),
`hook_pre_linear` (the RIGHT side `W_in x + b_in`), `hook_post` (their product) and `hook_out`.

The same forward runs in raw and in compatibility mode, so no path can fall back to an activation function (stock
TransformerLens 4.3 resolves an unknown activation name to SiLU in compatibility mode). Two layouts: a fused projection
(the tdooms `w` [2 d_hidden, d_model], split into two Linear views: rows [0, d_hidden) are `gate`, the rest `in`), or
separate `gate` / `in` / `out` submodules (the Llama form: gate_proj, up_proj, down_proj).

The weight-space analyses of the papers are methods (they read the current weights, so in compatibility mode they
describe the processed weights that the hooks see): `interaction_matrix(u)`, `eigendecompose(u, k)`, `tensor()`,
`decompose(x, u)`, `hosvd(r)`, `truncate(basis, k)`; their math is in `hooked_bilinear.analysis`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from transformer_lens.model_bridge.generalized_components.base import (
    GeneralizedComponent,
)
from transformer_lens.model_bridge.generalized_components.gated_mlp import GatedMLPBridge
from transformer_lens.model_bridge.generalized_components.joint_gate_up_mlp import (
    JointGateUpMLPBridge,
)

from hooked_bilinear import analysis
from hooked_bilinear.analysis import (
    HOSVD,
    BilinearFactors,
    Decomposition,
    Eigen,
    TruncatedBilinearMLP,
)
from hooked_bilinear.analysis.interaction import TENSOR_MAX_BYTES

Directions = Float[torch.Tensor, "*n d_out"]


class HookedBilinearMLP(JointGateUpMLPBridge):
    """Bilinear MLP bridge: `W_out((W_gate x + b_gate) * (W_in x + b_in)) + b_out`, exact in every mode.

    Weights in TransformerLens orientation: `W_gate`, `W_in` [d_model, d_hidden]; `W_out` [d_hidden, d_model];
    `b_gate`, `b_in` [d_hidden]; `b_out` [d_model] (None when the checkpoint has no biases).
    """

    is_bilinear = True

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
        fused_attr: Optional[str] = "w",
        split_gate_up_matrix: Optional[Callable] = None,
    ) -> None:
        """`fused_attr=None`: `submodules` names separate "gate", "in" and "out" projections (Llama's gate_proj,
        up_proj, down_proj); otherwise the module's `fused_attr` projection is split into gate and in."""
        submodules = dict(submodules or {})
        separate = {name: submodules.pop(name) for name in ("gate", "in") if name in submodules}
        if fused_attr is None and len(separate) != 2:
            raise ValueError("HookedBilinearMLP with fused_attr=None needs 'gate' and 'in' submodules.")
        super().__init__(
            name,
            config,
            submodules=submodules,
            split_gate_up_matrix=split_gate_up_matrix,
            fused_attr=fused_attr or "",
        )
        self.fused = fused_attr is not None
        for key, bridge in separate.items():  # replace the split views that JointGateUpMLPBridge made
            setattr(self, key, bridge)
            self.submodules[key] = bridge
            self.real_components[key] = (key, bridge)

    def set_original_component(self, original_component: torch.nn.Module) -> None:
        """Split the fused projection into gate/in views; separate projections are wired by the bridge set-up."""
        if self.fused:
            super().set_original_component(original_component)
        else:
            GatedMLPBridge.set_original_component(self, original_component)

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

    # ---- weight-space analyses (hooked_bilinear.analysis); x' = [x, 1] when the layer has biases ----

    def factors(self, dtype: Optional[torch.dtype] = None) -> BilinearFactors:
        """W_gate, W_in [d_in, d_hidden], W_out [d_hidden, d_model] with biases folded in, in the analysis dtype
        (float32 for half/bfloat16 weights unless `dtype` says otherwise, e.g. torch.float64)."""
        return BilinearFactors.from_mlp(self, dtype=dtype)

    @jaxtyped(typechecker=beartype)
    def interaction_matrix(self, u: Directions, dtype: Optional[torch.dtype] = None) -> Float[torch.Tensor, "*n d_in d_in"]:
        """Q_u [d_in, d_in] (or [n, d_in, d_in] for u [n, d_model]) with `u . mlp(x) = x'^T Q_u x'`."""
        return analysis.interaction_matrix(self.factors(dtype), u)

    @jaxtyped(typechecker=beartype)
    def eigendecompose(
        self, u: Directions, k: Optional[int] = None, dtype: Optional[torch.dtype] = None, **options: Any
    ) -> Eigen:
        """Top-|lambda| k eigenpairs (all when k is None) of Q_u: `Q_u = sum_k lambda_k v_k v_k^T`.

        Returns Eigen(lambda_ [*n, k], v [*n, k, d_in]). Options: method ("auto" | "dense" | "krylov" | "factored"), tol, block,
        max_memory (bytes), progress.
        """
        return analysis.eigendecompose(self.factors(dtype), u, k, **options)

    def tensor(self, max_bytes: Optional[int] = TENSOR_MAX_BYTES, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """B [d_model, d_in, d_in], symmetric in its last two axes; refuses above `max_bytes` (None: no limit)."""
        return analysis.tensor(self.factors(dtype), max_bytes)

    @jaxtyped(typechecker=beartype)
    def decompose(
        self,
        x: Float[torch.Tensor, "*batch d_x"],
        u: Directions,
        k: Optional[int] = None,
        dtype: Optional[torch.dtype] = None,
        **options: Any,
    ) -> Decomposition:
        """Contributions `lambda_k (v_k . x')^2` [*batch, k] (or [*batch, n, k]) of MLP inputs x (hook_in); with
        k=None they sum to `u . mlp(x)`."""
        return analysis.decompose(self.factors(dtype), x, u, k, **options)

    def hosvd(self, r: int, k: Optional[int] = None, dtype: Optional[torch.dtype] = None, **options: Any) -> HOSVD:
        """Top-r output directions of B (sigma [r], u [r, d_model]) and the top-k eigenpairs of each Q_{u_i}."""
        return analysis.hosvd(self.factors(dtype), r, k, **options)

    @jaxtyped(typechecker=beartype)
    def truncate(
        self, basis: Float[torch.Tensor, "r d_out"], k: int, dtype: Optional[torch.dtype] = None, **options: Any
    ) -> TruncatedBilinearMLP:
        """An MLP keeping the top-k eigencomponents of Q_u for each row u of `basis` (e.g. `hosvd(r).u` or the
        unembedding directions); swap it in with `hooked_bilinear.analysis.replace_mlp(model, layer, module)`."""
        return analysis.truncate(self.factors(dtype), basis, k, **options)
