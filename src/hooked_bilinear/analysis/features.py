"""SAE features through the bilinear MLP (the papers' section 5): feature interaction matrices, output-feature
eigendecompositions, rankings, the eigen approximation of a feature's activation, and top dataset examples.

An input SAE (on `blocks.{l}.mlp.hook_in`) writes the MLP input as `x_hat = f D + b_dec` (D = W_dec [d_sae, d_model],
f the feature activations). With `x' = [x, 1]` for layers with biases, `x_hat' = f D' + b'` where `D' = [D, 0]`
and `b' = [b_dec, 1]` (`D' = D`, `b' = b_dec` without biases), so for any output direction u

    u . mlp(x_hat) = x_hat'^T Q_u x_hat' = f^T (D' Q_u D'^T) f  +  f . (2 D' Q_u b')  +  b'^T Q_u b'

`feature_interactions` is the first matrix (`D Q_u D^T` of the papers), `feature_bias_terms` the other two.

An output feature j of an SAE on the MLP output (`blocks.{l}.mlp.hook_out`) has pre-activation
`(y - b_dec) . e_j + b_enc_j` with e_j = W_enc[:, j], so through the MLP it is `x'^T Q_{e_j} x' + offset_j`:
u = e_j is the direction whose interaction matrix and eigenvectors explain the feature (Figs. 8-9).

SAEs are duck-typed: anything with W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec (and `encode` where
activations are computed) works, an SAELens SAE included.

Pairings are checked. When an SAE names its hook (`sae.hook_name`, or SAELens's `cfg.metadata.hook_name`), every
function here that takes an MLP and an SAE refuses an SAE of another layer or of the other side of the MLP
(SAEError naming both hooks): an input SAE must read `blocks.{l}.mlp.hook_in` or `blocks.{l}.ln2.hook_normalized`
(`ln2.hook_out`), an output SAE `blocks.{l}.mlp.hook_out` or `blocks.{l}.hook_mlp_out`, with l the MLP's layer (read
from the bridge MLP's own hook names; for `BilinearFactors`, which do not know their layer, only the side is
checked). An SAE without a hook name is not checked. `check_hook=False` skips the check, for an SAE whose hook name
is wrong or names another model's hooks: the pairing is then yours to vouch for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from tqdm.auto import tqdm

from hooked_bilinear.analysis.checks import check_layer, check_token_ids
from hooked_bilinear.analysis.eigen import Eigen, eigendecompose
from hooked_bilinear.analysis.factors import BilinearFactors, as_factors
from hooked_bilinear.analysis.interaction import interaction_matrix
from hooked_bilinear.errors import SAEError

Features = int | Sequence[int] | torch.Tensor | None


def sae_tensors(sae: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W_enc, W_dec, b_enc, b_dec) of any SAE-like object, checked for consistent shapes."""
    found = [getattr(sae, name, None) for name in ("W_enc", "W_dec", "b_enc", "b_dec")]
    tensors = [t for t in found if isinstance(t, torch.Tensor)]
    if len(tensors) != len(found):
        raise SAEError(
            f"{type(sae).__name__} is not an SAE: it needs tensors W_enc [d_in, d_sae], W_dec [d_sae, d_in], "
            "b_enc [d_sae] and b_dec [d_in] (hooked_bilinear.sae.load gives one)."
        )
    W_enc, W_dec, b_enc, b_dec = (t.detach() for t in tensors)
    d_in, d_sae = W_enc.shape
    if W_dec.shape != (d_sae, d_in) or b_enc.shape != (d_sae,) or b_dec.shape != (d_in,):
        raise SAEError(
            f"inconsistent SAE shapes: W_enc {tuple(W_enc.shape)}, W_dec {tuple(W_dec.shape)}, b_enc "
            f"{tuple(b_enc.shape)}, b_dec {tuple(b_dec.shape)} (SAELens orientation: W_enc [d_in, d_sae])."
        )
    return W_enc, W_dec, b_enc, b_dec


def _check_width(sae: Any, factors: BilinearFactors, side: str) -> None:
    d_in = sae_tensors(sae)[0].shape[0]
    expected = factors.d_model if side == "input" else factors.d_out
    if d_in != expected:
        hook = "blocks.{l}.mlp.hook_in" if side == "input" else "blocks.{l}.mlp.hook_out"
        name = getattr(sae, "hook_name", None)
        raise SAEError(
            f"the {side} SAE{f' (hook {name})' if name else ''} reads vectors of size {d_in}, but this MLP's {side} has "
            f"size {expected}: use an SAE trained on the MLP's {side} ({hook})."
        )


INPUT_HOOKS = ("blocks.{l}.mlp.hook_in", "blocks.{l}.ln2.hook_normalized", "blocks.{l}.ln2.hook_out")
OUTPUT_HOOKS = ("blocks.{l}.mlp.hook_out", "blocks.{l}.hook_mlp_out")
SIDE_HOOKS = {"input": INPUT_HOOKS, "output": OUTPUT_HOOKS}


def sae_hook_name(sae: Any) -> str | None:
    """The hook an SAE says it reads: `sae.hook_name`, or SAELens's `cfg.metadata.hook_name` / `cfg.hook_name`."""
    cfg = getattr(sae, "cfg", None)
    for owner, name in ((sae, "hook_name"), (getattr(cfg, "metadata", None), "hook_name"), (cfg, "hook_name")):
        value = getattr(owner, name, None) if owner is not None else None
        if isinstance(value, str) and value:
            return value
    return None


def mlp_layer(mlp: Any) -> int | None:
    """The block index of a bridge's MLP, read from its `hook_in` name; None for factors or a module outside a bridge."""
    name = getattr(getattr(mlp, "hook_in", None), "name", None)
    match = re.fullmatch(r"blocks\.(\d+)\.mlp\.hook_in", name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def _hook_layer(hook: str, side: str) -> int | None:
    """The layer of `hook` if it is one of `side`'s hooks (any layer), else None."""
    for pattern in SIDE_HOOKS[side]:
        match = re.fullmatch(re.escape(pattern).replace(re.escape("{l}"), r"(\d+)"), hook)
        if match:
            return int(match.group(1))
    return None


def check_sae_hook(mlp: Any, sae: Any, side: str, check_hook: bool = True) -> None:
    """SAEError unless the SAE's hook is one of `side`'s hooks of the MLP's layer (see the module doc).

    Args:
        mlp: a bridge's `blocks[l].mlp` (its layer is read from its hook names) or BilinearFactors (side only).
        sae: the SAE; one without a hook name is not checked.
        side: "input" (the SAE reads the MLP's input) or "output" (its output).
        check_hook: False skips the check.

    Raises:
        SAEError: naming the SAE's hook and the hooks it should read.
    """
    hook = sae_hook_name(sae) if check_hook else None
    if hook is None:
        return
    layer = mlp_layer(mlp)
    found = _hook_layer(hook, side)
    if found is not None and (layer is None or found == layer):
        return
    other = "output" if side == "input" else "input"
    wanted = " or ".join(h.format(l=layer if layer is not None else "{l}") for h in SIDE_HOOKS[side])
    where = f"layer {layer}'s MLP" if layer is not None else "an MLP"
    hint = (
        f" It reads the MLP's {other}: did you swap the input and output SAEs?"
        if _hook_layer(hook, other) is not None
        else ""
    )
    raise SAEError(
        f"the {side} SAE reads {hook!r}, but it is used as the {side} SAE of {where}, whose {side} is {wanted}."
        f"{hint} Pass the SAE trained on that hook; or, if the SAE's hook_name is wrong (it names another model's "
        "hooks, say), check_hook=False, vouching for the pairing yourself."
    )


def feature_indices(sae: Any, features: Features) -> torch.Tensor:
    """Feature ids as a 1-d long tensor (all features for None), IndexError for any outside 0..d_sae-1."""
    d_sae = sae_tensors(sae)[0].shape[1]
    if features is None:
        return torch.arange(d_sae)
    ids = torch.as_tensor(features).reshape(-1)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"features must be integer ids, got dtype {ids.dtype}.")
    if ids.numel() and (ids.min() < 0 or ids.max() >= d_sae):
        bad = ids[(ids < 0) | (ids >= d_sae)][0].item()
        raise IndexError(f"feature {bad} does not exist: the SAE has features 0..{d_sae - 1}.")
    return ids.long()


def input_basis(factors: BilinearFactors, sae: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(D' [d_sae, d_in], b' [d_in]): decoder rows and b_dec in the factors' (augmented) input space."""
    _check_width(sae, factors, "input")
    _, W_dec, _, b_dec = sae_tensors(sae)
    D = W_dec.to(dtype=factors.dtype, device=factors.device)
    b = b_dec.to(dtype=factors.dtype, device=factors.device)
    if factors.augmented:
        D = torch.cat([D, torch.zeros_like(D[:, :1])], dim=1)
        b = torch.cat([b, torch.ones_like(b[:1])])
    return D, b


@jaxtyped(typechecker=beartype)
def feature_interactions(
    mlp: Any,
    sae: Any,
    u: Float[torch.Tensor, "*n d_out"],
    dtype: torch.dtype | None = None,
    *,
    check_hook: bool = True,
) -> Float[torch.Tensor, "*n d_sae d_sae"]:
    """`D Q_u D^T` [d_sae, d_sae] (or [n, d_sae, d_sae] for u [n, d_model]) for the input SAE's decoder D: entry
    (i, j) is how much features i and j together write along u (see module doc; the bias terms are separate).

    Args:
        mlp: the bilinear layer: a bilinear MLP component, a transformers `LlamaMLP` with hidden_act "linear", the
            tdooms MLP module, or `BilinearFactors`.
        sae: the SAE on the MLP's input (`hook_in`): anything with W_enc, W_dec, b_enc, b_dec (this package's SAEs
            or SAELens's).
        u: output direction(s) [d_model] or [n, d_model], e.g. `output_feature_directions(sae_out, ids)`.
        check_hook: check that the SAE reads this MLP's input (see the module doc); False for SAEs whose hook
            names are wrong.
        dtype: the dtype to compute in (default: the weights', float32 for half-precision weights).

    Returns:
        `D Q_u D^T`: [d_sae, d_sae] for one direction, [n, d_sae, d_sae] for n.

    Raises:
        SAEError: the SAE's width does not fit the MLP's input, or it reads another layer's or side's hook.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.

    Examples:
        >>> import hooked_bilinear as hb
        >>> from hooked_bilinear import analysis as A, sae as S
        >>> model = hb.from_pretrained("ts-synthetic-2l")
        >>> sae_in = S.load("ts-synthetic-2l/blocks.1.mlp.hook_in")
        >>> sae_out = S.load("ts-synthetic-2l/blocks.1.mlp.hook_out")
        >>> e = A.output_feature_directions(sae_out, [232])[0]  # output feature 232's encoder row
        >>> M = A.feature_interactions(model.blocks[1].mlp, sae_in, e)
        >>> M.shape
        torch.Size([512, 512])
    """
    check_sae_hook(mlp, sae, "input", check_hook)
    factors = as_factors(mlp, dtype)
    D, _ = input_basis(factors, sae)
    return D @ interaction_matrix(factors, u) @ D.T


class FeatureBias(NamedTuple):
    """The bias terms of `u . mlp(f D + b_dec)`: `linear` [*n, d_sae] = 2 D' Q_u b', `constant` [*n] = b'^T Q_u b'."""

    linear: torch.Tensor
    constant: torch.Tensor


@jaxtyped(typechecker=beartype)
def feature_bias_terms(
    mlp: Any,
    sae: Any,
    u: Float[torch.Tensor, "*n d_out"],
    dtype: torch.dtype | None = None,
    *,
    check_hook: bool = True,
) -> FeatureBias:
    """The decoder-bias cross terms: `u . mlp(x_hat) = f^T M f + f . linear + constant` (M = feature_interactions).
    The SAE must read this MLP's input (`check_hook`: see the module doc).

    Args:
        mlp: the bilinear layer: a bilinear MLP component, a transformers `LlamaMLP` with hidden_act "linear", the
            tdooms MLP module, or `BilinearFactors`.
        sae: the SAE on the MLP's input (`hook_in`): anything with W_enc, W_dec, b_enc, b_dec (this package's SAEs
            or SAELens's).
        u: output direction(s) [d_model] or [n, d_model], e.g. `output_feature_directions(sae_out, ids)`.
        dtype: the dtype to compute in (default: the weights', float32 for half-precision weights).
        check_hook: check that the SAE reads this MLP's input (see the module doc); False for SAEs whose hook
            names are wrong.

    Returns:
        `FeatureBias(linear, constant)`: `2 D' Q_u b'` [d_sae] and `b'^T Q_u b'` [] for one direction; [n, d_sae] and
        [n] for n.

    Raises:
        SAEError: the SAE's width does not fit the MLP's input, or it reads another layer's or side's hook.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    check_sae_hook(mlp, sae, "input", check_hook)
    factors = as_factors(mlp, dtype)
    D, b = input_basis(factors, sae)
    Qb = interaction_matrix(factors, u) @ b  # [*n, d_in]
    return FeatureBias(2 * Qb @ D.T, Qb @ b)


@beartype
def output_feature_directions(sae: Any, features: Features = None) -> torch.Tensor:
    """The encoder rows e_j = W_enc[:, j] of an output SAE, [n, d_out]: the u whose Q_u explains feature j.

    Args:
        sae: the SAE on the MLP's output: anything with W_enc, W_dec, b_enc, b_dec.
        features: feature ids (an int, a sequence or a 1-d tensor); None (default) for all d_sae.

    Returns:
        The encoder rows [n, d_out], one per feature, in the SAE's dtype.

    Raises:
        SAEError: `sae` lacks W_enc, W_dec, b_enc or b_dec, or their shapes disagree.
        IndexError: a feature id outside 0..d_sae - 1.
        TypeError: feature ids that are not integers.
    """
    ids = feature_indices(sae, features)
    return sae_tensors(sae)[0][:, ids].T


@beartype
def output_feature_offsets(sae: Any, features: Features = None) -> torch.Tensor:
    """`b_enc_j - b_dec . e_j` [n] (`b_enc_j` when the SAE does not subtract b_dec from its input): pre-activation
    of feature j = `e_j . mlp(x) + offset_j`.

    Args:
        sae: the SAE on the MLP's output: anything with W_enc, W_dec, b_enc, b_dec.
        features: feature ids (an int, a sequence or a 1-d tensor); None (default) for all d_sae.

    Returns:
        The offsets [n], one per feature.

    Raises:
        IndexError: a feature id outside 0..d_sae - 1.
        TypeError: feature ids that are not integers.
    """
    ids = feature_indices(sae, features)
    W_enc, _, b_enc, b_dec = sae_tensors(sae)
    offset = b_enc[ids].clone()
    if getattr(sae, "apply_b_dec_to_input", True):
        offset -= b_dec @ W_enc[:, ids]
    return offset


@beartype
def output_feature_eigen(
    mlp: Any,
    sae: Any,
    features: Features = None,
    k: int | None = None,
    dtype: torch.dtype | None = None,
    *,
    check_hook: bool = True,
    **options: Any,
) -> Eigen:
    """Eigenpairs of Q_{e_j} for output features j of an SAE on the MLP output (lambda_ [n, k], v [n, k, d_in]).
    The SAE must read this MLP's output (`check_hook`: see the module doc).

    Args:
        mlp: the bilinear layer: a bilinear MLP component, a transformers `LlamaMLP` with hidden_act "linear", the
            tdooms MLP module, or `BilinearFactors`.
        sae: the SAE on the MLP's output (`hook_out`): anything with W_enc, W_dec, b_enc, b_dec.
        features: feature ids (an int, a sequence or a 1-d tensor); None (default) for all d_sae.
        k: how many eigenpairs per feature, largest |lambda| first; None (default) for all d_in.
        dtype: the dtype to compute in (default: the weights', float32 for half-precision weights).
        check_hook: check that the SAE reads this MLP's output (see the module doc); False for SAEs whose hook
            names are wrong.
        **options: passed to `eigendecompose` (method, tol, block, max_memory, progress).

    Returns:
        `Eigen(lambda_, v)`: eigenvalues lambda [n, k] and eigenvectors v [n, k, d_in], one row per feature.

    Raises:
        SAEError: the SAE's width does not fit the MLP's output, or it reads another layer's or side's hook.
        IndexError: a feature id outside 0..d_sae - 1.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    check_sae_hook(mlp, sae, "output", check_hook)
    factors = as_factors(mlp, dtype)
    _check_width(sae, factors, "output")
    return eigendecompose(factors, output_feature_directions(sae, features).to(factors.dtype), k, **options)


@beartype
def outlier_count(eigenvalues: torch.Tensor, whisker: float = 1.5) -> torch.Tensor:
    """How many eigenvalues of each row lie outside [Q1 - whisker IQR, Q3 + whisker IQR] (Tukey's fences) [n].

    Args:
        eigenvalues: eigenvalues lambda [..., d], one spectrum per row.
        whisker: the fences' distance from the quartiles in IQRs (default 1.5).

    Returns:
        The outlier count of each spectrum [n], n the number of rows (the leading dimensions flattened; [1] for one
            spectrum).
    """
    lam = eigenvalues.reshape(-1, eigenvalues.shape[-1]).double()
    q1, q3 = lam.quantile(0.25, dim=-1, keepdim=True), lam.quantile(0.75, dim=-1, keepdim=True)
    iqr = q3 - q1
    return ((lam < q1 - whisker * iqr) | (lam > q3 + whisker * iqr)).sum(-1)


class FeatureRanking(NamedTuple):
    """Output features by score, descending: features [n], score [n], top_eigenvalue [n] (signed, largest |lambda|),
    outliers [n] (IQR outlier count of the spectrum)."""

    features: torch.Tensor
    score: torch.Tensor
    top_eigenvalue: torch.Tensor
    outliers: torch.Tensor


@beartype
def rank_output_features(
    mlp: Any,
    sae_out: Any,
    *,
    sae_in: Any = None,
    by: str = "top_eigenvalue",
    features: Features = None,
    dtype: torch.dtype | None = None,
    check_hook: bool = True,
    progress: bool = True,
) -> FeatureRanking:
    """Rank output features by the spectrum of Q_{e_j} (or of `D Q_{e_j} D^T` when the input SAE is given):
    by="top_eigenvalue" (largest |lambda|, each e_j scaled to unit norm so SAE scale does not decide) or
    by="outliers" (IQR outlier count; ties broken by top |lambda|).

    With an input SAE of more features than the MLP has inputs (n > d_in), the nonzero spectrum of the n x n
    `D Q D^T` is that of the d_in x d_in `G^(1/2) Q G^(1/2)`, G = D^T D, and the other n - d_in eigenvalues are
    zero: that is what is computed (exact zeros, where an n x n eigensolver returns rounding noise around zero).
    `progress`: a tqdm bar over the features.

    Args:
        mlp: the bilinear layer: a bilinear MLP component, a transformers `LlamaMLP` with hidden_act "linear", the
            tdooms MLP module, or `BilinearFactors`.
        sae_out: the SAE on the MLP's output (`hook_out`), whose encoder rows e_j are the directions.
        sae_in: the SAE on the MLP's input (`hook_in`), whose decoder D puts the spectra in feature space (default
            None: the spectra of Q_{e_j}).
        by: "top_eigenvalue" (default) or "outliers".
        features: the output features to rank (an int, a sequence or a 1-d tensor); None (default) for all.
        dtype: the dtype to compute in (default: the weights', float32 for half-precision weights).
        check_hook: check that each SAE reads this MLP's side (see the module doc); False for SAEs whose hook names
            are wrong.
        progress: show a progress bar over the features (default True).

    Returns:
        `FeatureRanking(features, score, top_eigenvalue, outliers)`, each [n], by score descending.

    Raises:
        ValueError: `by` is not "top_eigenvalue" or "outliers".
        SAEError: an SAE's width does not fit the MLP, or it reads another layer's or side's hook.
        IndexError: a feature id outside 0..d_sae - 1.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    if by not in ("top_eigenvalue", "outliers"):
        raise ValueError(f"by must be 'top_eigenvalue' or 'outliers', got {by!r}.")
    check_sae_hook(mlp, sae_out, "output", check_hook)
    if sae_in is not None:
        check_sae_hook(mlp, sae_in, "input", check_hook)
    factors = as_factors(mlp, dtype)
    _check_width(sae_out, factors, "output")
    ids = feature_indices(sae_out, features)
    u = output_feature_directions(sae_out, ids).to(factors.dtype)
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny)
    D = input_basis(factors, sae_in)[0] if sae_in is not None else None
    zeros = 0
    if D is not None and D.shape[0] > D.shape[1]:
        # R Q_u R with R = G^(1/2) is the interaction matrix of the factors R W_gate, R W_in: fold R in once
        R = _psd_sqrt(D.T @ D)
        factors = BilinearFactors(R @ factors.W_gate, R @ factors.W_in, factors.W_out, factors.augmented)
        zeros = D.shape[0] - D.shape[1]
        D = None
    spectra = []
    for start in tqdm(range(0, len(ids), 64), desc="output-feature spectra", disable=not progress):
        Q = interaction_matrix(factors, u[start : start + 64])
        lam = torch.linalg.eigvalsh(D @ Q @ D.T if D is not None else Q)
        if zeros:
            lam = torch.cat([lam, lam.new_zeros(len(lam), zeros)], dim=-1).sort(dim=-1).values
        spectra.append(lam)
    lam = torch.cat(spectra)
    top = torch.gather(lam, 1, lam.abs().argmax(-1, keepdim=True))[:, 0]
    outliers = outlier_count(lam)
    score = top.abs() if by == "top_eigenvalue" else outliers.to(lam.dtype) + top.abs() / (top.abs().max() + 1)
    order = score.argsort(descending=True, stable=True)
    return FeatureRanking(ids[order], score[order], top[order], outliers[order])


def _psd_sqrt(G: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a positive semi-definite matrix (rounding's negative eigenvalues as zero)."""
    s, U = torch.linalg.eigh(G)
    return (U * s.clamp_min(0).sqrt()) @ U.T


class InteractionPairs(NamedTuple):
    """The strongest entries of a symmetric feature interaction matrix (i <= j), by |value|: i, j, value [k].
    In `f^T M f` an off-diagonal pair contributes 2 M_ij f_i f_j, a diagonal one M_ii f_i^2."""

    i: torch.Tensor
    j: torch.Tensor
    value: torch.Tensor


@beartype
def top_interactions(interactions: torch.Tensor, k: int = 10, include_self: bool = True) -> InteractionPairs:
    """The k entries (i <= j, or i < j without self interactions) of largest |value| of `D Q_u D^T` [d_sae, d_sae].

    Args:
        interactions: a symmetric feature interaction matrix [d_sae, d_sae] (e.g. `feature_interactions`).
        k: how many entries (default 10; fewer when the triangle has fewer).
        include_self: count the diagonal (i = j) entries (default True).

    Returns:
        `InteractionPairs(i, j, value)`, each [k], by |value| descending.

    Raises:
        ValueError: k < 1, or `interactions` is not a square matrix.
    """
    if k < 1:
        raise ValueError(f"k={k}: pass the number of entries to return, at least 1.")
    if interactions.ndim != 2 or interactions.shape[0] != interactions.shape[1]:
        raise ValueError(f"interactions must be a square matrix [d_sae, d_sae], got {tuple(interactions.shape)}.")
    n = interactions.shape[0]
    i, j = torch.triu_indices(n, n, offset=0 if include_self else 1)
    values = interactions[i, j]
    top = values.abs().topk(min(k, values.numel())).indices
    return InteractionPairs(i[top], j[top], values[top])


@beartype
def self_and_cross(interactions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(diagonal [d_sae], strict upper triangle [d_sae (d_sae - 1) / 2]) of an interaction matrix (Fig. 27's split)."""
    n = interactions.shape[-1]
    i, j = torch.triu_indices(n, n, offset=1)
    return interactions.diagonal(dim1=-2, dim2=-1), interactions[..., i, j]


@beartype
def random_symmetric_spectrum(size: int, scale: float, seed: int = 0) -> torch.Tensor:
    """Eigenvalues of a random symmetric (GOE) matrix of the given size whose entries have standard deviation
    `scale`: the bulk an interaction matrix's spectrum is compared against (Fig. 27)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(size, size, generator=g, dtype=torch.float64) * scale
    return torch.linalg.eigvalsh((A + A.T) / 2**0.5)


class EigenApproximation(NamedTuple):
    """Fig. 9's measure for output features: correlation [n, len(ks)] between the top-k eigen approximation
    `sum_{i<=k} lambda_i (v_i . x')^2` and the SAE's activation, over the inputs where the feature is active
    (NaN for features active on `min_active` or fewer inputs); n_active [n]."""

    features: torch.Tensor
    ks: tuple[int, ...]
    correlation: torch.Tensor
    n_active: torch.Tensor


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = (a.norm() * b.norm()).item()
    return float("nan") if denominator == 0 else (a @ b).item() / denominator


@jaxtyped(typechecker=beartype)
def eigen_approximation(
    mlp: Any,
    sae_out: Any,
    x: Float[torch.Tensor, "n d_model"],
    features: Features = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    activations: torch.Tensor | None = None,
    min_active: int = 10,
    dtype: torch.dtype | None = torch.float64,
    *,
    check_hook: bool = True,
) -> EigenApproximation:
    """Fig. 9 for output features (see EigenApproximation) over MLP inputs x [n, d_model] (hook_in activations).
    `activations` [n, n_features]: the SAE's activations of those features on the MLP outputs; when None they are
    computed as `sae_out.encode(mlp(x))`. The SAE must read this MLP's output (`check_hook`: see the module doc).

    Args:
        mlp: the bilinear layer: a bilinear MLP component, a transformers `LlamaMLP` with hidden_act "linear", the
            tdooms MLP module, or `BilinearFactors`.
        sae_out: the SAE on the MLP's output (`hook_out`).
        x: MLP inputs [n, d_model] (hook_in activations).
        features: the output features (an int, a sequence or a 1-d tensor); None (default) for all d_sae.
        ks: the numbers of eigenpairs, each in 1..d_in (default (1, 2, 4, 8)).
        activations: the SAE's activations of the features [n, n_features] (default None: computed from x).
        min_active: features active on this many inputs or fewer get NaN (default 10).
        dtype: the dtype to compute in (default float64; None: the weights', float32 for half precision).
        check_hook: check that the SAE reads this MLP's output (see the module doc); False for SAEs whose hook
            names are wrong.

    Returns:
        `EigenApproximation(features, ks, correlation, n_active)`: the feature ids [n_features], ks, the Pearson
        correlations [n_features, len(ks)] (float64) and the active counts [n_features].

    Raises:
        ValueError: ks empty or outside 1..d_in, or `activations` not [n, n_features].
        SAEError: the SAE is not SAE-like, its width does not fit the MLP's output, or it reads another layer's or
            side's hook.
        IndexError: a feature id outside 0..d_sae - 1.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    check_sae_hook(mlp, sae_out, "output", check_hook)
    factors = as_factors(mlp, dtype)
    ids = feature_indices(sae_out, features)
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1 or max(ks) > factors.d_in:
        raise ValueError(f"ks must lie in 1..{factors.d_in}, got {ks}.")
    x = x.reshape(-1, x.shape[-1])
    if activations is None:
        with torch.no_grad():
            y = factors.forward(x).to(sae_tensors(sae_out)[0].dtype)
            activations = sae_out.encode(y)[:, ids]
    if activations.shape != (x.shape[0], len(ids)):
        raise ValueError(
            f"activations must be [n_inputs={x.shape[0]}, n_features={len(ids)}], got {tuple(activations.shape)}."
        )
    x_aug = factors.augment(x)
    correlation = torch.full((len(ids), len(ks)), float("nan"), dtype=torch.float64)
    n_active = (activations > 0).sum(0)
    counted = (n_active > min_active).nonzero()[:, 0]
    if len(counted) == 0:
        return EigenApproximation(ids, ks, correlation, n_active)
    eigen = output_feature_eigen(factors, sae_out, ids[counted], k=max(ks), method="dense")
    for slot, row in enumerate(counted.tolist()):
        active = activations[:, row] > 0
        terms = eigen.lambda_[slot] * (x_aug[active] @ eigen.v[slot].T).square()  # [n_active, max k]
        cumulative = terms.cumsum(-1)
        target = activations[active, row].to(terms.dtype)
        for column, k in enumerate(ks):
            correlation[row, column] = _pearson(cumulative[:, k - 1], target)
    return EigenApproximation(ids, ks, correlation, n_active)


class Example(NamedTuple):
    """One top activation: value, where (sequence, position), and the text before, at and after it."""

    value: float
    sequence: int
    position: int
    before: str
    token: str
    after: str

    def __str__(self) -> str:
        return f"{self.value:8.3f}  {self.before} [[{self.token}]] {self.after}"


@beartype
def top_examples(
    tokenizer: Any,
    tokens: torch.Tensor,
    values: torch.Tensor,
    k: int = 10,
    context: int = 8,
    after: int = 2,
    *,
    rank_by: Literal["value", "magnitude", "contribution"] = "value",
    lambda_: float | None = None,
) -> list[Example]:
    """The k strongest (sequence, position) of `values`, with `context` tokens before and `after` tokens after.

    Args:
        tokenizer: a tokenizer (or a model holding one) to show tokens as text; None shows the ids.
        tokens: token ids [n_seq, pos].
        values: [n_seq, pos]: a feature's activations, or an eigenvector's projections `v . x'`
            (`eigenvector_activations`).
        k, context, after: how many examples, and the tokens shown before and after each.
        rank_by: "value": the largest values (a feature's activations); "magnitude": the largest |value|, both
            signs (an eigenvector's projection, whose sign is arbitrary); "contribution": the largest
            |lambda_ * value^2|, the eigencomponent's contribution `lambda (v . x')^2` to the output direction, which
            `Example.value` then holds (needs `lambda_`, the eigenvalue). An eigenvector is read by its contributions:
            with values = `v . x'`, the strongest contexts are missed by rank_by="value" when they sit on the
            negative side of v.
        lambda_: the eigenvalue of the eigenvector whose projections `values` holds (rank_by="contribution" only).

    Returns:
        The examples, strongest first.

    Raises:
        ValueError: shapes that differ, k < 1, or lambda_ missing (or given) for the ranking.
    """
    if (rank_by == "contribution") != (lambda_ is not None):
        raise ValueError(
            f"rank_by={rank_by!r} with lambda_={lambda_}: rank_by='contribution' needs lambda_ (the eigenvalue), "
            "and the other rankings take none."
        )
    if k < 1 or context < 0 or after < 0:
        raise ValueError(
            f"k must be at least 1, context and after at least 0; got k={k}, context={context}, after={after}."
        )
    if tokens.shape != values.shape or tokens.ndim != 2:
        raise ValueError(
            f"tokens and values must both be [n_seq, pos]; got {tuple(tokens.shape)} and {tuple(values.shape)}."
        )
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    flat = values.reshape(-1).double()
    if lambda_ is not None:
        flat = lambda_ * flat.square()
    score = flat if rank_by == "value" else flat.abs()
    order = score.topk(min(k, flat.numel())).indices
    examples = []
    for value, index in zip(flat[order].tolist(), order.tolist()):
        sequence, position = divmod(index, tokens.shape[1])
        row = tokens[sequence].tolist()

        def text(ids: list[int]) -> str:
            return " ".join(tokenizer.convert_ids_to_tokens(ids)) if tokenizer is not None else " ".join(map(str, ids))

        examples.append(
            Example(
                value,
                sequence,
                position,
                text(row[max(0, position - context) : position]),
                text([row[position]]),
                text(row[position + 1 : position + 1 + after]),
            )
        )
    return examples


def hook_activations(model: Any, tokens: torch.Tensor, hook_name: str, batch_size: int = 32) -> torch.Tensor:
    """The activations of one hook over token sequences [n_seq, pos] -> [n_seq, pos, d], no grad."""
    if hook_name not in model.hook_dict:
        raise SAEError(f"the model has no hook {hook_name!r}.")
    check_token_ids(model, tokens)
    out = []
    with torch.no_grad():
        for start in range(0, tokens.shape[0], batch_size):
            _, cache = model.run_with_cache(
                tokens[start : start + batch_size], names_filter=hook_name, return_type=None
            )
            out.append(cache[hook_name])
    return torch.cat(out)


@beartype
def feature_activations(
    model: Any,
    sae: Any,
    tokens: torch.Tensor,
    features: Features = None,
    hook_name: str | None = None,
    batch_size: int = 32,
    check_hook: bool = True,
) -> torch.Tensor:
    """An SAE's feature activations over token sequences [n_seq, pos] -> [n_seq, pos, n_features], at the SAE's hook
    (`hook_name` for an SAE that names none; one that differs from the SAE's own is an error unless check_hook=False).

    Args:
        model: a hooked model (a bridge or `HookedTransformer`).
        sae: the SAE (this package's or SAELens's).
        tokens: integer token ids [n_seq, pos].
        features: feature ids (an int, a sequence or a 1-d tensor); None (default) for all d_sae.
        hook_name: the hook to read (default: the SAE's own).
        batch_size: sequences per forward pass (default 32).
        check_hook: refuse a `hook_name` other than the SAE's own (default True).

    Returns:
        The activations [n_seq, pos, n_features].

    Raises:
        SAEError: no hook name (given or the SAE's), a `hook_name` that differs from the SAE's own while
            `check_hook`, or a hook the model does not have.
        IndexError: a feature id outside 0..d_sae - 1.
        TypeError: tokens are not integer ids.
        ValueError: tokens outside the model's vocabulary.
    """
    ids = feature_indices(sae, features)
    own = sae_hook_name(sae)
    if check_hook and hook_name is not None and own is not None and hook_name != own:
        raise SAEError(
            f"hook_name={hook_name!r}, but the SAE reads {own!r}: leave hook_name out, or pass check_hook=False to "
            "encode another hook's activations on purpose."
        )
    name = hook_name or own
    if name is None:
        raise SAEError("this SAE does not say which hook it reads (metadata hook_name): pass hook_name=.")
    with torch.no_grad():
        return sae.encode(hook_activations(model, tokens, name, batch_size))[..., ids]


@beartype
def eigenvector_activations(
    model: Any, layer: int, v: torch.Tensor, tokens: torch.Tensor, batch_size: int = 32
) -> torch.Tensor:
    """Projections `v . x'` of layer `layer`'s MLP inputs (hook_in) on eigenvectors: what an eigenvector reads.

    With `x' = [x, 1]` for layers with biases (`x' = x` without), an eigenpair (lambda, v) of `Q_u` adds
    `lambda (v . x')^2` to `u . mlp(x)` (all eigenpairs together: exactly `u . mlp(x)`). The contexts that drive the
    eigenvector are the ones with the largest contribution, on either side of v:

        eigen = hooked_bilinear.analysis.eigendecompose(model.blocks[layer].mlp, u, k=4)
        values = eigenvector_activations(model, layer, eigen.v[0], tokens)          # [n_seq, pos]
        top_examples(model, tokens, values, rank_by="contribution", lambda_=eigen.lambda_[0].item())

    Args:
        model: a TransformerBridge with bilinear MLPs.
        layer: the block whose MLP the eigenvectors belong to.
        v: eigenvectors [d_in] or [k, d_in] (`eigendecompose` / `output_feature_eigen`; d_in = d_model, + 1 with
            biases).
        tokens: token ids [n_seq, pos].
        batch_size: sequences per forward pass.

    Returns:
        `v . x'` [n_seq, pos] (or [n_seq, pos, k] for k eigenvectors).

    Raises:
        IndexError: for a layer that does not exist; ValueError for eigenvectors of the wrong size or tokens outside
            the vocabulary; TypeError for eigenvectors that are not floating-point.
    """
    check_layer(model, layer)
    if not v.dtype.is_floating_point:
        raise TypeError(f"eigenvectors must be floating-point, got dtype {v.dtype}.")
    factors = BilinearFactors.from_mlp(model.blocks[layer].mlp, dtype=v.dtype)
    if v.shape[-1] != factors.d_in or v.ndim not in (1, 2):
        raise ValueError(f"eigenvectors must be [d_in={factors.d_in}] or [k, {factors.d_in}], got {tuple(v.shape)}.")
    x = hook_activations(model, tokens, f"blocks.{layer}.mlp.hook_in", batch_size)
    v = v.to(factors.device)
    return factors.augment(x) @ (v.mT if v.ndim == 2 else v)  # `.T` of a 1-d tensor is deprecated
