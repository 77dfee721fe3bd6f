"""Eigendecomposition of interaction matrices: `Q_u = sum_k lambda_k v_k v_k^T`, so `u . out(x) = sum_k lambda_k (v_k . x')^2`.

`eigendecompose(factors, u, k)` returns the k eigenpairs of largest |lambda| (all of them when k is None), ordered
by |lambda| descending, for one direction or a batch. Three methods, same answer:

- "dense": `torch.linalg.eigh` of each Q_u.
- "krylov": block Krylov (Lanczos with full re-orthogonalisation) on each Q_u, batched over directions, grown
  until every kept Ritz pair has residual `||Q v - lambda v|| <= tol * |lambda_max|`; a direction that has not
  converged once the Krylov space reaches d_in / 2 gets the dense eigh instead. Much cheaper than eigh for k << d_in.
  The block size (default 4) is the largest multiplicity of an eigenvalue it is guaranteed to resolve.
- "factored": the same Krylov iteration, matrix-free: products with Q_u go through the factors
  (`FactoredOperator`), so no Q_u is ever built; the least memory, a little slower on CPU (measured).

"auto" takes "krylov" when 8 k <= d_in and d_in >= 128, else "dense". Eigenvectors are unit vectors with their
largest-magnitude entry positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from tqdm.auto import tqdm

from hooked_bilinear.analysis.factors import BilinearFactors, Layer, as_factors
from hooked_bilinear.analysis.interaction import (
    chunks,
    interaction_matrices,
    memory_budget,
)

# "auto" | "dense" | "krylov" | "factored"; a str, so that a wrong name gets eigendecompose's own error message
Method = str
DEFAULT_TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
PROGRESS_MIN_DIRECTIONS = 256


class Eigen(NamedTuple):
    """Eigenpairs of Q_u, by |lambda| descending: lambda_ [..., k], v [..., k, d_in] (v[..., i, :] is v_i)."""

    lambda_: Float[torch.Tensor, "*n k"]
    v: Float[torch.Tensor, "*n k d_in"]


def _top_by_magnitude(lam: torch.Tensor, vec: torch.Tensor, k: int) -> Eigen:
    """From ascending eigh output (lam [m, s], vec [m, d, s]), the k of largest |lambda| as Eigen([m, k], [m, k, d])."""
    order = lam.abs().argsort(dim=-1, descending=True, stable=True)[:, :k]
    lam = torch.gather(lam, 1, order)
    vec = torch.gather(vec, 2, order[:, None, :].expand(-1, vec.shape[1], -1)).mT
    return Eigen(lam, vec)


def _canonical_sign(v: Float[torch.Tensor, "m k d"]) -> Float[torch.Tensor, "m k d"]:
    """Flip each eigenvector so that its largest-magnitude entry is positive."""
    peak = torch.gather(v, -1, v.abs().argmax(dim=-1, keepdim=True))
    return v * torch.where(peak < 0, -1.0, 1.0).to(v.dtype)


def dense_top_k(Q: Float[torch.Tensor, "m d d"], k: int) -> Eigen:
    """Top-|lambda| k eigenpairs of each Q by a full `torch.linalg.eigh`."""
    lam, vec = torch.linalg.eigh(Q)
    return _top_by_magnitude(lam, vec, k)


def _ritz(V: torch.Tensor, QV: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rayleigh-Ritz in the row space of V [m, s, d] (QV = V Q): the k Ritz pairs of largest |theta|.

    Returns theta [m, k], Ritz vectors as rows [m, k, d], and residual norms ||Q v - theta v|| [m, k].
    """
    T = V @ QV.mT
    lam, vec = torch.linalg.eigh(0.5 * (T + T.mT))
    theta, S = _top_by_magnitude(lam, vec, k)  # S [m, k, s]: coefficients as rows
    ritz = S @ V
    residual = (S @ QV - theta[:, :, None] * ritz).norm(dim=-1)
    return theta, ritz, residual


class DenseOperator:
    """A batch of explicit symmetric matrices Q [m, d, d] acting on rows: Y [m, b, d] -> Y Q."""

    def __init__(self, Q: Float[torch.Tensor, "m d d"]) -> None:
        self.Q = Q

    def apply(self, Y: torch.Tensor) -> torch.Tensor:
        return Y @ self.Q  # rows stream Q row by row: several times faster on CPU than Q @ (thin matrix)

    def select(self, keep: torch.Tensor) -> DenseOperator:
        return DenseOperator(self.Q[keep])

    def dense(self) -> torch.Tensor:
        return self.Q


class FactoredOperator:
    """Q_n = sym(W_gate diag(c_n) W_in^T) without building it: `Y Q_n = (((Y W_in) * c_n) W_gate^T + ((Y W_gate) *
    c_n) W_in^T) / 2`, four products with the shared factors, batched over the m directions as plain matmuls."""

    def __init__(self, factors: BilinearFactors, c: Float[torch.Tensor, "m d_hidden"]) -> None:
        self.factors, self.c = factors, c

    def apply(self, Y: torch.Tensor) -> torch.Tensor:
        m, b, d = Y.shape
        f, flat = self.factors, Y.reshape(m * b, d)
        via_in = ((flat @ f.W_in).view(m, b, -1) * self.c[:, None, :]).view(m * b, -1)
        via_gate = ((flat @ f.W_gate).view(m, b, -1) * self.c[:, None, :]).view(m * b, -1)
        return (0.5 * (via_in @ f.W_gate.T + via_gate @ f.W_in.T)).view(m, b, d)

    def select(self, keep: torch.Tensor) -> FactoredOperator:
        return FactoredOperator(self.factors, self.c[keep])

    def dense(self) -> torch.Tensor:
        return interaction_matrices(self.factors, self.c)


Operator = DenseOperator | FactoredOperator


def krylov_top_k(
    Q: Float[torch.Tensor, "m d d"] | Operator, k: int, tol: float, block: int = 4, d: int | None = None
) -> Eigen:
    """Top-|lambda| k eigenpairs of each of m symmetric matrices by block Krylov + Rayleigh-Ritz, checked by
    residuals (see module doc). Q is the explicit matrices [m, d, d] or an operator on rows (then pass d)."""
    op = DenseOperator(Q) if isinstance(Q, torch.Tensor) else Q
    probe = op.c if isinstance(op, FactoredOperator) else op.Q
    m, d = probe.shape[0], (op.Q.shape[-1] if isinstance(op, DenseOperator) else d)
    if d is None:
        raise ValueError("pass d (the matrices' size) with an operator.")
    dtype, device = probe.dtype, probe.device
    max_dim = min(d, max(d // 2, 2 * k + block))
    max_dim -= max_dim % block
    if max_dim < k:  # too small a matrix for a Krylov space to hold k pairs
        result = dense_top_k(op.dense(), k)
        return Eigen(result.lambda_, _canonical_sign(result.v))
    first_check = min(max_dim, max(2 * k + block, d // 4))
    generator = torch.Generator(device=device).manual_seed(0)
    V = torch.empty(m, max_dim, d, dtype=dtype, device=device)  # orthonormal Krylov basis, as rows
    QV = torch.empty_like(V)  # its image under Q
    start = torch.randn(m, d, block, generator=generator, device=device, dtype=dtype)
    V[:, :block] = torch.linalg.qr(start).Q.mT
    lam_out = torch.empty(m, k, dtype=dtype, device=device)
    v_out = torch.empty(m, k, d, dtype=dtype, device=device)
    active = torch.arange(m, device=device)
    dim = 0
    while True:
        QV[:, dim : dim + block] = op.apply(V[:, dim : dim + block])
        dim += block
        if dim >= max_dim or (dim >= first_check and (dim - first_check) % 16 < block):
            theta, ritz, residual = _ritz(V[:, :dim], QV[:, :dim], k)
            ok = (residual <= tol * theta[:, :1].abs()).all(dim=1)
            if dim >= max_dim and not ok.all():
                exact = dense_top_k(op.select(~ok).dense(), k)  # not converged in d/2 dimensions: the exact eigh
                theta[~ok], ritz[~ok] = exact.lambda_, exact.v
                ok[:] = True
            lam_out[active[ok]] = theta[ok]
            v_out[active[ok]] = ritz[ok]
            if ok.all():
                return Eigen(lam_out, _canonical_sign(v_out))
            active, op, V, QV = active[~ok], op.select(~ok), V[~ok], QV[~ok]
        Y = QV[:, dim - block : dim]
        for _ in range(2):  # block Gram-Schmidt against the basis so far, twice for stability
            Y = Y - (Y @ V[:, :dim].mT) @ V[:, :dim]
            Y = torch.linalg.qr(Y.mT).Q.mT
        V[:, dim : dim + block] = Y


@jaxtyped(typechecker=beartype)
def eigendecompose(
    factors: Layer,
    u: Float[torch.Tensor, "*n d_out"],
    k: int | None = None,
    *,
    method: Method = "auto",
    tol: float | None = None,
    block: int = 4,
    max_memory: int | None = None,
    progress: bool | None = None,
) -> Eigen:
    """Eigenpairs of Q_u by |lambda| descending: lambda_ [k], v [k, d_in] for u [d_out]; [n, k], [n, k, d_in] for u [n, d_out].

    k=None gives all d_in pairs (then `Q_u = v^T diag(lambda) v`). Directions are processed in batches that fit in
    `max_memory` bytes (32 MiB on CPU, 2 GiB on CUDA by default), with a progress bar for long sweeps.

    Args:
        factors: the layer: `BilinearFactors`, or a bilinear MLP component (`model.blocks[l].mlp`).
        u: output direction(s) in the residual stream, [d_out] or [n, d_out] (e.g. `contrast_directions(...)`).
        k: how many eigenpairs, largest |lambda| first; None for all d_in.
        method: "dense" (`torch.linalg.eigh` of each Q_u), "krylov" (block Lanczos on each Q_u, residual-checked,
            dense for any direction that does not converge), "factored" (the same, matrix-free through the
            factors) or "auto" (krylov when k is small against d_in, else dense).
        tol: the Krylov residual tolerance (default: set by the dtype).
        block: the Krylov block size.
        max_memory: bytes per batch of directions (default 32 MiB on CPU, 2 GiB on CUDA).
        progress: a progress bar (default: for long sweeps only).

    Returns:
        `Eigen(lambda_, v)`: eigenvalues [k] and eigenvectors [k, d_in] (rows) for one direction; [n, k] and
        [n, k, d_in] for n.

    Raises:
        ValueError: k outside 1..d_in, an unknown method, or block < 1.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.

    Examples:
        >>> import hooked_bilinear as hb
        >>> from hooked_bilinear.analysis import contrast_directions, eigendecompose, top_tokens
        >>> model = hb.from_pretrained("ts-synthetic-2l")
        >>> u = contrast_directions(model, model.to_single_token("cat"))[0]  # "cat" against the rest
        >>> eig = eigendecompose(model.blocks[1].mlp, u, k=4)
        >>> eig.lambda_.shape, eig.v.shape
        (torch.Size([4]), torch.Size([4, 128]))
        >>> top_tokens(model, eig.v[:1], k=3, through="embed", layer=1).top_tokens[0]
        ['yellow', 'red', 'soft']
    """
    factors = as_factors(factors)
    directions = factors.directions(u)
    d_in = factors.d_in
    if k is None:
        k = d_in
    if not 1 <= k <= d_in:
        raise ValueError(
            f"k={k} eigenpairs asked for, but Q_u is {d_in} x {d_in}: pass 1 <= k <= {d_in} (or None for all)."
        )
    if method == "auto":
        method = "krylov" if 8 * k <= d_in and d_in >= 128 else "dense"
    if method not in ("dense", "krylov", "factored"):
        raise ValueError(f"method must be 'auto', 'dense', 'krylov' or 'factored', got {method!r}.")
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}.")
    if tol is None:
        tol = DEFAULT_TOL.get(factors.dtype, 1e-2)
    n = directions.shape[0]
    element = factors.W_gate.element_size()
    budget = memory_budget(factors.device, max_memory)
    per_direction = element * 2 * d_in * d_in  # Q_u, plus the Krylov basis and its image (d_in / 2 rows each)
    ranges = list(chunks(n, per_direction, budget * 3 // 4))  # the rest is left to the building of Q
    show = progress if progress is not None else n >= PROGRESS_MIN_DIRECTIONS and len(ranges) > 1
    lam = torch.empty(n, k, dtype=factors.dtype, device=factors.device)
    v = torch.empty(n, k, d_in, dtype=factors.dtype, device=factors.device)
    with tqdm(total=n, desc=f"eigendecompose ({method}, top {k})", unit="dir", disable=not show) as bar:
        for start, stop in ranges:
            c = factors.hidden_coefficients(directions[start:stop])
            if method == "dense":
                result = dense_top_k(interaction_matrices(factors, c, max_memory=budget // 4), k)
                result = Eigen(result.lambda_, _canonical_sign(result.v))
            elif method == "krylov":
                result = krylov_top_k(
                    DenseOperator(interaction_matrices(factors, c, max_memory=budget // 4)), k, tol, block
                )
            else:
                result = krylov_top_k(FactoredOperator(factors, c), k, tol, block, d=d_in)
            lam[start:stop], v[start:stop] = result
            bar.update(stop - start)
    if u.ndim == 1:
        return Eigen(lam[0], v[0])
    return Eigen(lam, v)


@dataclass(frozen=True)
class EigenSolver:
    """How `eigendecompose` finds eigenpairs (its keyword arguments, kept together): `decompose`, `hosvd` and
    `truncate` take one as `solver=`, e.g. `EigenSolver(method="dense")`."""

    method: Method = "auto"
    tol: float | None = None
    block: int = 4
    max_memory: int | None = None
    progress: bool | None = None

    def __call__(self, factors: Layer, u: Float[torch.Tensor, "*n d_out"], k: int | None = None) -> Eigen:
        return eigendecompose(
            factors,
            u,
            k,
            method=self.method,
            tol=self.tol,
            block=self.block,
            max_memory=self.max_memory,
            progress=self.progress,
        )


DEFAULT_SOLVER = EigenSolver()
