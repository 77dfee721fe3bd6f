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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

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
    mlp: Any, sae: Any, u: Float[torch.Tensor, "*n d_out"], dtype: torch.dtype | None = None
) -> Float[torch.Tensor, "*n d_sae d_sae"]:
    """`D Q_u D^T` [d_sae, d_sae] (or [n, d_sae, d_sae] for u [n, d_model]) for the input SAE's decoder D: entry
    (i, j) is how much features i and j together write along u (see module doc; the bias terms are separate).

    Args:
        mlp: the bilinear layer: a bilinear MLP component, a transformers `LlamaMLP` with hidden_act "linear", the
            tdooms MLP module, or `BilinearFactors`.
        sae: the SAE on the MLP's input (`hook_in`): anything with W_enc, W_dec, b_enc, b_dec (this package's SAEs
            or SAELens's).
        u: output direction(s) [d_model] or [n, d_model], e.g. `output_feature_directions(sae_out, ids)`.
        dtype: the dtype to compute in (default: the weights', float32 for half-precision weights).

    Returns:
        `D Q_u D^T`: [d_sae, d_sae] for one direction, [n, d_sae, d_sae] for n.

    Raises:
        SAEError: the SAE's width does not fit the MLP's input.
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
    factors = as_factors(mlp, dtype)
    D, _ = input_basis(factors, sae)
    return D @ interaction_matrix(factors, u) @ D.T


class FeatureBias(NamedTuple):
    """The bias terms of `u . mlp(f D + b_dec)`: `linear` [*n, d_sae] = 2 D' Q_u b', `constant` [*n] = b'^T Q_u b'."""

    linear: torch.Tensor
    constant: torch.Tensor


@jaxtyped(typechecker=beartype)
def feature_bias_terms(
    mlp: Any, sae: Any, u: Float[torch.Tensor, "*n d_out"], dtype: torch.dtype | None = None
) -> FeatureBias:
    """The decoder-bias cross terms: `u . mlp(x_hat) = f^T M f + f . linear + constant` (M = feature_interactions)."""
    factors = as_factors(mlp, dtype)
    D, b = input_basis(factors, sae)
    Qb = interaction_matrix(factors, u) @ b  # [*n, d_in]
    return FeatureBias(2 * Qb @ D.T, Qb @ b)


@beartype
def output_feature_directions(sae: Any, features: Features = None) -> torch.Tensor:
    """The encoder rows e_j = W_enc[:, j] of an output SAE, [n, d_out]: the u whose Q_u explains feature j."""
    ids = feature_indices(sae, features)
    return sae_tensors(sae)[0][:, ids].T


@beartype
def output_feature_offsets(sae: Any, features: Features = None) -> torch.Tensor:
    """`b_enc_j - b_dec . e_j` [n] (`b_enc_j` when the SAE does not subtract b_dec from its input): pre-activation
    of feature j = `e_j . mlp(x) + offset_j`."""
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
    **options: Any,
) -> Eigen:
    """Eigenpairs of Q_{e_j} for output features j of an SAE on the MLP output (lambda_ [n, k], v [n, k, d_in])."""
    factors = as_factors(mlp, dtype)
    _check_width(sae, factors, "output")
    return eigendecompose(factors, output_feature_directions(sae, features).to(factors.dtype), k, **options)


@beartype
def outlier_count(eigenvalues: torch.Tensor, whisker: float = 1.5) -> torch.Tensor:
    """How many eigenvalues of each row lie outside [Q1 - whisker IQR, Q3 + whisker IQR] (Tukey's fences) [n]."""
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
) -> FeatureRanking:
    """Rank output features by the spectrum of Q_{e_j} (or of `D Q_{e_j} D^T` when the input SAE is given):
    by="top_eigenvalue" (largest |lambda|, each e_j scaled to unit norm so SAE scale does not decide) or
    by="outliers" (IQR outlier count; ties broken by top |lambda|)."""
    if by not in ("top_eigenvalue", "outliers"):
        raise ValueError(f"by must be 'top_eigenvalue' or 'outliers', got {by!r}.")
    factors = as_factors(mlp, dtype)
    _check_width(sae_out, factors, "output")
    ids = feature_indices(sae_out, features)
    u = output_feature_directions(sae_out, ids).to(factors.dtype)
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny)
    spectra = []
    for start in range(0, len(ids), 64):
        Q = interaction_matrix(factors, u[start : start + 64])
        if sae_in is not None:
            D, _ = input_basis(factors, sae_in)
            Q = D @ Q @ D.T
        spectra.append(torch.linalg.eigvalsh(Q))
    lam = torch.cat(spectra)
    top = torch.gather(lam, 1, lam.abs().argmax(-1, keepdim=True))[:, 0]
    outliers = outlier_count(lam)
    score = top.abs() if by == "top_eigenvalue" else outliers.to(lam.dtype) + top.abs() / (top.abs().max() + 1)
    order = score.argsort(descending=True, stable=True)
    return FeatureRanking(ids[order], score[order], top[order], outliers[order])


class InteractionPairs(NamedTuple):
    """The strongest entries of a symmetric feature interaction matrix (i <= j), by |value|: i, j, value [k].
    In `f^T M f` an off-diagonal pair contributes 2 M_ij f_i f_j, a diagonal one M_ii f_i^2."""

    i: torch.Tensor
    j: torch.Tensor
    value: torch.Tensor


@beartype
def top_interactions(interactions: torch.Tensor, k: int = 10, include_self: bool = True) -> InteractionPairs:
    """The k entries (i <= j, or i < j without self interactions) of largest |value| of `D Q_u D^T` [d_sae, d_sae]."""
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
) -> EigenApproximation:
    """Fig. 9 for output features (see EigenApproximation) over MLP inputs x [n, d_model] (hook_in activations).
    `activations` [n, n_features]: the SAE's activations of those features on the MLP outputs; when None they are
    computed as `sae_out.encode(mlp(x))`."""
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
    tokenizer: Any, tokens: torch.Tensor, values: torch.Tensor, k: int = 10, context: int = 8, after: int = 2
) -> list[Example]:
    """The k (sequence, position) of largest value, with `context` tokens before and `after` tokens after.
    tokens, values: [n_seq, pos] (values: a feature's activations, an eigenvector's projection, ...)."""
    if tokens.shape != values.shape or tokens.ndim != 2:
        raise ValueError(
            f"tokens and values must both be [n_seq, pos]; got {tuple(tokens.shape)} and {tuple(values.shape)}."
        )
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    flat = values.reshape(-1).float()
    top = flat.topk(min(k, flat.numel()))
    examples = []
    for value, index in zip(top.values.tolist(), top.indices.tolist()):
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
) -> torch.Tensor:
    """An SAE's feature activations over token sequences [n_seq, pos] -> [n_seq, pos, n_features], at the SAE's hook."""
    ids = feature_indices(sae, features)
    name = hook_name or getattr(sae, "hook_name", None)
    if name is None:
        raise SAEError("this SAE does not say which hook it reads (metadata hook_name): pass hook_name=.")
    with torch.no_grad():
        return sae.encode(hook_activations(model, tokens, name, batch_size))[..., ids]


@beartype
def eigenvector_activations(
    model: Any, layer: int, v: torch.Tensor, tokens: torch.Tensor, batch_size: int = 32
) -> torch.Tensor:
    """Projections `v . x'` of layer `layer`'s MLP inputs (hook_in) on eigenvectors v [d_in] or [k, d_in] (from
    `eigendecompose` / `output_feature_eigen`), over token sequences [n_seq, pos] -> [n_seq, pos] or [n_seq, pos, k]:
    the values whose top dataset examples show what an eigenvector reads (its contribution is lambda times the square)."""
    if not 0 <= layer < len(model.blocks):
        raise IndexError(f"layer {layer} does not exist: the model has layers 0..{len(model.blocks) - 1}.")
    factors = BilinearFactors.from_mlp(model.blocks[layer].mlp, dtype=v.dtype if v.dtype.is_floating_point else None)
    if v.shape[-1] != factors.d_in or v.ndim not in (1, 2):
        raise ValueError(f"eigenvectors must be [d_in={factors.d_in}] or [k, {factors.d_in}], got {tuple(v.shape)}.")
    x = hook_activations(model, tokens, f"blocks.{layer}.mlp.hook_in", batch_size)
    return factors.augment(x) @ v.to(factors.device).T
