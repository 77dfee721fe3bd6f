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
`decompose(x, u)`, `hosvd(r)`, `truncate(basis, k)`, `feature_interactions(sae, u)`; their math is in `hooked_bilinear.analysis`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from transformer_lens.model_bridge.generalized_components.gated_mlp import GatedMLPBridge

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


class HookedBilinearMLP(GatedMLPBridge):
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

    @jaxtyped(typechecker=beartype)
    def feature_interactions(
        self, sae: Any, u: Directions, dtype: Optional[torch.dtype] = None
    ) -> Float[torch.Tensor, "*n d_sae d_sae"]:
        """`D Q_u D^T` [d_sae, d_sae] (or [n, d_sae, d_sae]) for an SAE on this MLP's input (hook_in) with decoder
        D; `hooked_bilinear.analysis.feature_bias_terms` gives the decoder-bias terms."""
        return analysis.feature_interactions(self, sae, u, dtype)

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
