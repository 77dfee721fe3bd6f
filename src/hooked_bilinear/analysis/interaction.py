"""Interaction matrices Q_u, the third-order tensor B, and the output-mode Gram matrix, from the factors alone.

For an output direction u:  `u . out(x) = x'^T Q_u x'`  with  `Q_u = sym(W_gate diag(W_out u) W_in^T)`,
where `sym(A) = (A + A^T) / 2` (TransformerLens orientation: W_gate, W_in [d_in, d_hidden], W_out [d_hidden, d_out]).
The tensor `B[o, i, j] = sym_ij sum_h W_out[h, o] W_gate[i, h] W_in[j, h]` is `Q_u` for the basis vectors u = e_o,
and `Q_u = sum_o u_o B[o]`. Nothing here materialises B unless `tensor` is asked for it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped

from hooked_bilinear.analysis.factors import BilinearFactors, Layer, as_factors

CPU_MEMORY_BUDGET = 32 * 2**20
CUDA_MEMORY_BUDGET = 2 * 2**30
TENSOR_MAX_BYTES = 2 * 2**30


def memory_budget(device: torch.device, max_memory: int | None) -> int:
    """Bytes of working memory a batched analysis may use: the one given, else 32 MiB on CPU and 2 GiB on CUDA."""
    if max_memory is not None:
        if max_memory <= 0:
            raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory}.")
        return max_memory
    return CUDA_MEMORY_BUDGET if device.type == "cuda" else CPU_MEMORY_BUDGET


def chunks(n: int, per_item_bytes: int, budget: int) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges over n items so that each range needs at most `budget` bytes (at least one item)."""
    size = max(1, budget // max(per_item_bytes, 1))
    for start in range(0, n, size):
        yield start, min(n, start + size)


def interaction_matrices(
    factors: BilinearFactors, c: Float[torch.Tensor, "n d_hidden"], max_memory: int | None = None
) -> Float[torch.Tensor, "n d_in d_in"]:
    """`Q_n = sym(W_gate diag(c_n) W_in^T)` for hidden coefficients c_n = W_out u_n, built in memory-bounded batches."""
    d_in, d_hidden = factors.d_in, factors.d_hidden
    element = factors.W_gate.element_size()
    out = torch.empty(c.shape[0], d_in, d_in, dtype=factors.dtype, device=factors.device)
    budget = memory_budget(factors.device, max_memory)
    for start, stop in chunks(c.shape[0], (d_in * d_hidden + d_in * d_in) * element, budget):
        A = (factors.W_gate[None] * c[start:stop, None, :]) @ factors.W_in.T
        out[start:stop] = A
        out[start:stop] += A.mT
    return out.mul_(0.5)


@jaxtyped(typechecker=beartype)
def interaction_matrix(
    factors: Layer, u: Float[torch.Tensor, "*n d_out"], max_memory: int | None = None
) -> Float[torch.Tensor, "*n d_in d_in"]:
    """Q_u [d_in, d_in] for u [d_out], or [n, d_in, d_in] for u [n, d_out]; `u . out(x) = x'^T Q_u x'`.

    Args:
        factors: the layer: `BilinearFactors`, or a bilinear MLP component (`model.blocks[l].mlp`).
        u: output direction(s) in the residual stream, [d_out] or [n, d_out].
        max_memory: bytes per batch of directions (default 32 MiB on CPU, 2 GiB on CUDA).

    Returns:
        Q_u = sym(W_gate diag(W_out u) W_in^T): [d_in, d_in] for one direction, [n, d_in, d_in] for n (d_in = d_model
        + 1 for a layer with biases).

    Raises:
        ValueError: u is not [d_out] or [n, d_out], or `max_memory` is not positive.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    factors = as_factors(factors)
    directions = factors.directions(u)
    Q = interaction_matrices(factors, factors.hidden_coefficients(directions), max_memory)
    return Q[0] if u.ndim == 1 else Q


@beartype
def tensor(factors: Layer, max_bytes: int | None = TENSOR_MAX_BYTES) -> Float[torch.Tensor, "d_out d_in d_in"]:
    """The symmetric third-order tensor B [d_out, d_in, d_in], `B[o] = Q_{e_o}`.

    Refuses when B would need more than `max_bytes` (default 2 GiB; None lifts the limit): for a TinyLlama layer
    B is 2048^3 numbers, 34 GB in float32. `interaction_matrix`, `eigendecompose` and `hosvd` never build it.

    Args:
        factors: the layer: `BilinearFactors`, or a bilinear MLP component (`model.blocks[l].mlp`).
        max_bytes: the largest size of B to build, in bytes (default 2 GiB); None for no limit.

    Returns:
        B [d_out, d_in, d_in], symmetric in its last two indices.

    Raises:
        MemoryError: B would need more than `max_bytes`.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    factors = as_factors(factors)
    size = factors.d_out * factors.d_in**2 * factors.W_gate.element_size()
    if max_bytes is not None and size > max_bytes:
        raise MemoryError(
            f"B would take {size / 2**30:.2f} GiB ({factors.d_out} x {factors.d_in} x {factors.d_in} in "
            f"{factors.dtype}), over the max_bytes limit of {max_bytes / 2**30:.2f} GiB. Use interaction_matrix / "
            "eigendecompose / hosvd, which work from the low-rank factors, or pass max_bytes=None to build it anyway."
        )
    return interaction_matrices(factors, factors.W_out.T.contiguous())


@beartype
def output_gram(factors: Layer) -> Float[torch.Tensor, "d_out d_out"]:
    """`M[o, o'] = <B[o], B[o']>_F`, through d_hidden x d_hidden matrices instead of B.

    With A_o = W_gate diag(W_out[:, o]) W_in^T:  <sym A_o, sym A_o'> = W_out[:, o]^T K W_out[:, o'] where
    K = ((W_gate^T W_gate) * (W_in^T W_in) + (W_gate^T W_in) * (W_in^T W_gate)) / 2   (element-wise products).

    Args:
        factors: the layer: `BilinearFactors`, or a bilinear MLP component (`model.blocks[l].mlp`).

    Returns:
        The Gram matrix M [d_out, d_out] (symmetric positive semi-definite).

    Raises:
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    factors = as_factors(factors)
    G, W = factors.W_gate, factors.W_in
    GW = G.T @ W
    K = (G.T @ G) * (W.T @ W)
    K += GW * GW.T
    K *= 0.5
    return factors.W_out.T @ K @ factors.W_out
