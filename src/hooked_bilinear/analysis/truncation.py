"""Low-rank truncation: keep the top eigencomponents of Q_u for each direction of an output basis.

For output directions `U` [r, d_out] (rows u_i; e.g. the HOSVD directions or the vocabulary's unembedding) and
their read-out `A = pinv(U)^T` [r, d_out], the layer's output projected on the span of U is exactly
`sum_i A_i (u_i . out(x)) = sum_i A_i sum_j lambda_ij (v_ij . x')^2`. Keeping the top-k j for every i gives a
bilinear layer with r * k hidden units (gate = in = v_ij, out = lambda_ij A_i): `TruncatedBilinearMLP`. With an
orthonormal basis of all d_out directions and k = d_in it reproduces the layer exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from tqdm.auto import tqdm

from hooked_bilinear.analysis.checks import check_layer, check_token_ids
from hooked_bilinear.analysis.eigen import DEFAULT_SOLVER, Eigen, EigenSolver
from hooked_bilinear.analysis.factors import Layer, as_factors, not_bilinear


class TruncatedBilinearMLP(torch.nn.Module):
    """`out(x) = sum_ij lambda_ij (v_ij . x')^2 A_i`: a bilinear MLP made of kept eigencomponents.

    v [r, k, d_in], lambda_ [r, k], readout A [r, d_out]; `augmented` says x' = [x, 1]. It is itself a bilinear
    layer (W_gate = W_in = the v_ij), so every analysis applies to it too.
    """

    is_bilinear = True
    v: torch.Tensor
    lambda_: torch.Tensor
    readout: torch.Tensor

    def __init__(self, v: torch.Tensor, lambda_: torch.Tensor, readout: torch.Tensor, augmented: bool) -> None:
        super().__init__()
        self.augmented = augmented
        self.register_buffer("v", v.detach().clone())
        self.register_buffer("lambda_", lambda_.detach().clone())
        self.register_buffer("readout", readout.detach().clone())

    @property
    def k(self) -> int:
        return self.v.shape[1]

    def keep(self, k: int) -> TruncatedBilinearMLP:
        """The same truncation with only the top-k components of each direction (k <= self.k)."""
        if not 1 <= k <= self.k:
            raise ValueError(f"can keep 1..{self.k} components per direction, got k={k}.")
        return TruncatedBilinearMLP(self.v[:, :k], self.lambda_[:, :k], self.readout, self.augmented)

    @property
    def _V(self) -> torch.Tensor:
        return self.v.reshape(-1, self.v.shape[-1])  # [r * k, d_in]

    @property
    def W_gate(self) -> Float[torch.Tensor, "d_model hidden"]:
        return self._V[:, : self._V.shape[1] - int(self.augmented)].T

    W_in = W_gate

    @property
    def W_out(self) -> Float[torch.Tensor, "hidden d_out"]:
        return (self.lambda_[:, :, None] * self.readout[:, None, :]).reshape(-1, self.readout.shape[1])

    @property
    def b_gate(self) -> torch.Tensor | None:
        return self._V[:, -1] if self.augmented else None

    b_in = b_gate
    b_out = None

    def forward(self, x: Float[torch.Tensor, "*batch d_model"]) -> Float[torch.Tensor, "*batch d_out"]:
        """`sum_ij lambda_ij (v_ij . x')^2 A_i`, in the dtype of the kept components, returned in x's dtype."""
        x_aug = x.to(self.v.dtype)
        if self.augmented:
            x_aug = torch.cat([x_aug, torch.ones_like(x_aug[..., :1])], dim=-1)
        return ((x_aug @ self._V.T).square() @ self.W_out).to(x.dtype)


@jaxtyped(typechecker=beartype)
def truncate(
    factors: Layer,
    basis: Float[torch.Tensor, "r d_out"],
    k: int,
    *,
    solver: EigenSolver = DEFAULT_SOLVER,
) -> TruncatedBilinearMLP:
    """Keep the top-k eigencomponents of Q_u for each row u of `basis` [r, d_out] (see module doc).

    Args:
        factors: the layer: `BilinearFactors`, or a bilinear MLP component (`model.blocks[l].mlp`).
        basis: the output directions u as rows [r, d_out], linearly independent (or an overcomplete set, r > d_out).
        k: how many eigencomponents to keep per direction, largest |lambda| first (1..d_in).
        solver: how the eigenpairs are found (default `EigenSolver()`: `eigendecompose`'s defaults).

    Returns:
        A `TruncatedBilinearMLP`, a module mapping MLP inputs [..., d_model] to outputs [..., d_out]; `keep(k')`
        keeps fewer components.

    Raises:
        ValueError: the basis rows are linearly dependent (r <= d_out), or k outside 1..d_in.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    factors = as_factors(factors)
    directions = factors.directions(basis)
    if torch.linalg.matrix_rank(directions) < directions.shape[0] and directions.shape[0] <= factors.d_out:
        raise ValueError(
            "the basis directions are linearly dependent: pass linearly independent rows (or an overcomplete set spanning d_out)."
        )
    readout = torch.linalg.pinv(directions).T.contiguous()
    eigen: Eigen = solver(factors, directions, k)
    return TruncatedBilinearMLP(eigen.v, eigen.lambda_, readout, factors.augmented)


class MLPReplacement:
    """What `replace_mlp` returns: `blocks.{layer}.mlp` outputs `module(x)` for its input x from the call on, until
    `undo()` (alias `remove()`) or the end of a `with` block. Undoing twice is harmless."""

    def __init__(self, model: Any, layer: int, module: Callable[[torch.Tensor], torch.Tensor]) -> None:
        blocks = getattr(model, "blocks", None)
        if blocks is None:
            raise TypeError(f"replace_mlp needs a TransformerBridge (with .blocks), got {type(model).__name__}.")
        if not 0 <= layer < len(blocks):
            raise IndexError(f"layer={layer} does not exist: the model has layers 0..{len(blocks) - 1}.")
        if not callable(module):
            raise TypeError(
                f"replace_mlp needs a module mapping the MLP's input to its output, got {type(module).__name__}."
            )
        self.layer = layer
        mlp = blocks[layer].mlp
        stash: list[torch.Tensor] = []

        def keep_input(x: torch.Tensor, hook: Any) -> torch.Tensor:
            stash[:] = [x]
            return x

        def swap_output(out: torch.Tensor, hook: Any) -> torch.Tensor:
            return module(stash[0]).to(out.dtype)

        # Registered on the hook points themselves (not a `model.hooks()` context), so the replacement lives
        # exactly as long as this object says, whatever hook contexts open and close meanwhile.
        self._handles = [
            (mlp.hook_in, mlp.hook_in.add_hook(keep_input)),
            (mlp.hook_out, mlp.hook_out.add_hook(swap_output)),
        ]

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def undo(self) -> None:
        """Put the original MLP back."""
        for point, handle in self._handles:
            handle.hook.remove()
            if handle in point.fwd_hooks:
                point.fwd_hooks.remove(handle)
        self._handles = []

    remove = undo

    def __enter__(self) -> MLPReplacement:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.undo()


@beartype
def replace_mlp(model: Any, layer: int, module: Callable[[torch.Tensor], torch.Tensor]) -> MLPReplacement:
    """`blocks.{layer}.mlp` outputs `module(x)` for its input x (hooks on its hook_in / hook_out), from now on:

        handle = replace_mlp(model, 0, truncated)      # ... handle.undo() (or handle.remove()) restores it
        with replace_mlp(model, 0, truncated): ...     # restored at the end of the block

    `model.reset_hooks()` removes it too, as it removes any hook added without `is_permanent`.

    Args:
        model: a TransformerBridge (with `blocks`).
        layer: the block whose MLP is replaced, 0..n_layers - 1.
        module: a callable mapping the MLP's input [..., d_model] to its output (e.g. a `TruncatedBilinearMLP`); its
            result is cast to the output's dtype.

    Returns:
        An `MLPReplacement` handle: `undo()` / `remove()`, or use it in a `with` block.

    Raises:
        TypeError: the model has no `blocks`, or `module` is not callable.
        IndexError: the layer does not exist.
    """
    return MLPReplacement(model, layer, module)


class TruncationCurve(NamedTuple):
    """Faithfulness per number of kept components: loss of the model with the truncated MLP, and the correlation
    between truncated and original MLP outputs; baseline_loss is the untruncated model's."""

    ks: list[int]
    loss: list[float]
    correlation: list[float]
    baseline_loss: float


@beartype
def truncation_curve(
    model: Any,
    layer: int,
    truncated: TruncatedBilinearMLP,
    tokens: torch.Tensor,
    ks: Sequence[int],
    progress: bool = True,
) -> TruncationCurve:
    """Loss and output correlation of the model with `truncated.keep(k)` in place of layer `layer`'s MLP, per k.

    Args:
        model: a TransformerBridge with bilinear MLPs.
        layer: the block whose MLP is truncated.
        truncated: the truncation (`truncate`), whose `keep(k)` goes in place of the MLP.
        tokens: token ids [n_seq, pos] the loss is measured on.
        ks: the numbers of components kept per direction, each in 1..truncated.k.
        progress: show a progress bar over ks (default True).

    Returns:
        `TruncationCurve(ks, loss, correlation, baseline_loss)`: per k, the model's mean next-token loss and the
        Pearson correlation between the truncated and the original MLP outputs (all positions and dimensions); the
        untruncated model's loss.

    Raises:
        IndexError: the layer does not exist.
        TypeError: tokens are not integer ids.
        ValueError: tokens outside the vocabulary, or a k outside 1..truncated.k.
        NotBilinearError: the layer's MLP is not bilinear.
    """
    check_layer(model, layer)
    check_token_ids(model, tokens)
    mlp = model.blocks[layer].mlp
    if not getattr(mlp, "is_bilinear", False):
        raise not_bilinear(mlp, f"blocks.{layer}.mlp")
    with torch.no_grad():
        baseline, cache = model.run_with_cache(
            tokens, return_type="loss", names_filter=[f"blocks.{layer}.mlp.hook_in", f"blocks.{layer}.mlp.hook_out"]
        )
        x, out = cache[f"blocks.{layer}.mlp.hook_in"], cache[f"blocks.{layer}.mlp.hook_out"]
        losses, correlations = [], []
        for k in tqdm(list(ks), desc="truncation curve", disable=not progress):
            module = truncated.keep(k)
            approx = module(x)
            stacked = torch.stack([approx.flatten(), out.flatten()]).double()
            correlations.append(torch.corrcoef(stacked)[0, 1].item())
            with replace_mlp(model, layer, module):
                losses.append(model(tokens, return_type="loss").item())
    return TruncationCurve(list(ks), losses, correlations, baseline.item())
