"""Small random classifiers and the brute-force interaction matrices the vision tests compare against."""

from __future__ import annotations

import torch

from hooked_bilinear.vision import BilinearClassifier, VisionConfig


def random_model(
    bias: bool = False, head_bias: bool = False, seed: int = 0, d_model: int = 12, d_hidden: int = 20
) -> BilinearClassifier:
    torch.manual_seed(seed)
    model = BilinearClassifier(VisionConfig(d_model=d_model, d_hidden=d_hidden, bias=bias, head_bias=head_bias))
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


def random_pixels(n: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def brute_force_Q(model: BilinearClassifier) -> torch.Tensor:
    """Q_c by the definition sym(G diag(u_c) R^T) from the raw gate (G) and in (R) weights, on e' = [e, 1] when there
    is a bias."""
    G, R = model.mlp.gate.weight.double(), model.mlp.in_proj.weight.double()  # [d_hidden, d_model]
    if model.config.bias or model.config.head_bias:
        zero = torch.zeros(G.shape[0], dtype=G.dtype)
        bg = model.mlp.gate.bias.double() if model.config.bias else zero
        bi = model.mlp.in_proj.bias.double() if model.config.bias else zero
        G, R = torch.cat([G, bg[:, None]], 1), torch.cat([R, bi[:, None]], 1)
    A = torch.einsum("hi,ch,hj->cij", G, model.head.weight.double(), R)
    Q = (A + A.mT) / 2
    if model.config.head_bias:
        Q[:, -1, -1] += model.head.bias.double()
    return Q.detach()


def brute_force_eigh(model: BilinearClassifier) -> tuple[torch.Tensor, torch.Tensor]:
    """All eigenpairs of each Q_c by torch.linalg.eigh, ordered by |lambda| descending: lam [C, d], v [C, d, d] rows."""
    lam, vec = torch.linalg.eigh(brute_force_Q(model))
    order = lam.abs().argsort(dim=-1, descending=True)
    lam = torch.gather(lam, 1, order)
    v = torch.gather(vec.mT, 1, order[:, :, None].expand(-1, -1, vec.shape[1]))
    return lam, v
