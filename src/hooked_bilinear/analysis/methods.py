"""The weight-space analyses as methods, for any module that is a bilinear layer (`is_bilinear = True` with
`W_gate`, `W_in`, `W_out` and `b_gate`, `b_in`, `b_out` in TransformerLens orientation): `HookedBilinearMLP` in the
language models, the bilinear layer of `hooked_bilinear.vision`. Each method reads the current weights through
`BilinearFactors` and calls the function of the same name in `hooked_bilinear.analysis`."""

from __future__ import annotations

from typing import Any, cast

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

from hooked_bilinear.analysis.decompose import Decomposition, decompose
from hooked_bilinear.analysis.eigen import DEFAULT_SOLVER, Eigen, EigenSolver, Method, eigendecompose
from hooked_bilinear.analysis.factors import BilinearFactors
from hooked_bilinear.analysis.features import check_sae_hook, feature_interactions
from hooked_bilinear.analysis.hosvd import HOSVD, hosvd
from hooked_bilinear.analysis.interaction import (
    TENSOR_MAX_BYTES,
    interaction_matrix,
    tensor,
)
from hooked_bilinear.analysis.truncation import TruncatedBilinearMLP, truncate

Directions = Float[torch.Tensor, "*n d_out"]


class BilinearAnalysisMethods:
    """Mixin: `factors`, `interaction_matrix`, `eigendecompose`, `tensor`, `decompose`, `hosvd`, `truncate`,
    `feature_interactions`;
    x' = [x, 1] when the layer has biases."""

    def factors(self, dtype: torch.dtype | None = None) -> BilinearFactors:
        """W_gate, W_in [d_in, d_hidden], W_out [d_hidden, d_out] with biases folded in, in the analysis dtype
        (float32 for half/bfloat16 weights unless `dtype` says otherwise, e.g. torch.float64)."""
        # every class that mixes this in is a torch.nn.Module; the mixin itself cannot say so to a type checker
        return BilinearFactors.from_mlp(cast(torch.nn.Module, self), dtype=dtype)

    @jaxtyped(typechecker=beartype)
    def interaction_matrix(
        self, u: Directions, dtype: torch.dtype | None = None
    ) -> Float[torch.Tensor, "*n d_in d_in"]:
        """Q_u [d_in, d_in] (or [n, d_in, d_in] for u [n, d_out]) with `u . out(x) = x'^T Q_u x'`."""
        return interaction_matrix(self.factors(dtype), u)

    @jaxtyped(typechecker=beartype)
    def eigendecompose(
        self,
        u: Directions,
        k: int | None = None,
        dtype: torch.dtype | None = None,
        *,
        method: Method = "auto",
        tol: float | None = None,
        block: int = 4,
        max_memory: int | None = None,
        progress: bool | None = None,
    ) -> Eigen:
        """Top-|lambda| k eigenpairs (all when k is None) of Q_u: `Q_u = sum_k lambda_k v_k v_k^T`.

        Returns Eigen(lambda_ [*n, k], v [*n, k, d_in]); method, tol, block, max_memory (bytes) and progress as
        `hooked_bilinear.analysis.eigendecompose`.
        """
        return eigendecompose(
            self.factors(dtype), u, k, method=method, tol=tol, block=block, max_memory=max_memory, progress=progress
        )

    def tensor(self, max_bytes: int | None = TENSOR_MAX_BYTES, dtype: torch.dtype | None = None) -> torch.Tensor:
        """B [d_out, d_in, d_in], symmetric in its last two axes; refuses above `max_bytes` (None: no limit)."""
        return tensor(self.factors(dtype), max_bytes)

    @jaxtyped(typechecker=beartype)
    def decompose(
        self,
        x: Float[torch.Tensor, "*batch d_x"],
        u: Directions,
        k: int | None = None,
        dtype: torch.dtype | None = None,
        *,
        solver: EigenSolver = DEFAULT_SOLVER,
    ) -> Decomposition:
        """Contributions `lambda_k (v_k . x')^2` [*batch, k] (or [*batch, n, k]) of layer inputs x (hook_in); with
        k=None they sum to `u . out(x)`."""
        return decompose(self.factors(dtype), x, u, k, solver=solver)

    def hosvd(
        self,
        r: int,
        k: int | None = None,
        dtype: torch.dtype | None = None,
        *,
        solver: EigenSolver = DEFAULT_SOLVER,
    ) -> HOSVD:
        """Top-r output directions of B (sigma [r], u [r, d_out]) and the top-k eigenpairs of each Q_{u_i}."""
        return hosvd(self.factors(dtype), r, k, solver=solver)

    @jaxtyped(typechecker=beartype)
    def truncate(
        self,
        basis: Float[torch.Tensor, "r d_out"],
        k: int,
        dtype: torch.dtype | None = None,
        *,
        solver: EigenSolver = DEFAULT_SOLVER,
    ) -> TruncatedBilinearMLP:
        """A layer keeping the top-k eigencomponents of Q_u for each row u of `basis` (e.g. `hosvd(r).u` or the
        unembedding directions); swap it in with `hooked_bilinear.analysis.replace_mlp(model, layer, module)`."""
        return truncate(self.factors(dtype), basis, k, solver=solver)

    @jaxtyped(typechecker=beartype)
    def feature_interactions(
        self, sae: Any, u: Directions, dtype: torch.dtype | None = None, *, check_hook: bool = True
    ) -> Float[torch.Tensor, "*n d_sae d_sae"]:
        """`D Q_u D^T` [d_sae, d_sae] (or [n, d_sae, d_sae]) for an SAE on this layer's input (hook_in) with decoder
        D; `hooked_bilinear.analysis.feature_bias_terms` gives the decoder-bias terms. An SAE of another hook is an
        error (see `hooked_bilinear.analysis.features`; `check_hook=False` skips the check)."""
        check_sae_hook(self, sae, "input", check_hook)
        return feature_interactions(self.factors(dtype), sae, u, dtype, check_hook=False)
