"""Random bilinear layers for the analysis tests, and the brute-force math the analyses must agree with."""

from __future__ import annotations

import torch

from hooked_bilinear.analysis import BilinearFactors


def random_layer(d_model: int, d_hidden: int, bias: bool, seed: int = 0, dtype: torch.dtype = torch.float64) -> dict:
    """Raw weights in TransformerLens orientation (biases None when bias is False)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) / shape[0] ** 0.5).to(dtype)

    layer = dict(W_gate=rnd(d_model, d_hidden), W_in=rnd(d_model, d_hidden), W_out=rnd(d_hidden, d_model))
    layer.update(b_gate=None, b_in=None, b_out=None)
    if bias:
        layer.update(b_gate=rnd(d_hidden), b_in=rnd(d_hidden), b_out=rnd(d_model))
    return layer


def factors_of(layer: dict, dtype: torch.dtype | None = None) -> BilinearFactors:
    return BilinearFactors.from_weights(**layer, dtype=dtype)


def mlp_forward(layer: dict, x: torch.Tensor) -> torch.Tensor:
    """The bilinear MLP written out: ((x W_gate + b_gate) * (x W_in + b_in)) W_out + b_out."""

    def add(t: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return t if b is None else t + b

    return add(
        (add(x @ layer["W_gate"], layer["b_gate"]) * add(x @ layer["W_in"], layer["b_in"])) @ layer["W_out"],
        layer["b_out"],
    )


def brute_force_tensor(layer: dict) -> torch.Tensor:
    """B [d_out, d_in, d_in] by the definition, on the augmented input [x, 1] when the layer has biases.

    Built directly from the quadratic form: with x' = [x, 1], out_o(x) = sum_ij x'_i x'_j B[o, i, j], where the
    bias-free part is sym(W_gate diag W_out[:, o] W_in^T), the cross terms come from b_in / b_gate, and b_out sits
    at B[o, -1, -1]. Written element-wise on purpose, independent of the factor augmentation.
    """
    G, W, P = layer["W_gate"], layer["W_in"], layer["W_out"]
    d, h = G.shape
    if layer["b_gate"] is None:
        A = torch.einsum("ho,ih,jh->oij", P, G, W)
        return 0.5 * (A + A.transpose(1, 2))
    bg, bi, bo = layer["b_gate"], layer["b_in"], layer["b_out"]
    B = torch.zeros(P.shape[1], d + 1, d + 1, dtype=G.dtype)
    A = torch.einsum("ho,ih,jh->oij", P, G, W)
    B[:, :d, :d] = 0.5 * (A + A.transpose(1, 2))
    linear = torch.einsum("ho,ih,h->oi", P, G, bi) + torch.einsum("ho,ih,h->oi", P, W, bg)  # [d_out, d]
    B[:, :d, d] = B[:, d, :d] = 0.5 * linear
    B[:, d, d] = torch.einsum("ho,h,h->o", P, bg, bi) + bo
    return B
