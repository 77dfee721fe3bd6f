"""Eigen-image similarity: 1 for a model and itself, also when its embedding is re-parametrised; less across seeds."""

from __future__ import annotations

import torch

from hooked_bilinear.vision import eigen_image_similarity
from tests.vision.vision_models import random_model


def test_same_function_different_embedding_is_similarity_one():
    a = random_model(seed=0)
    b = random_model(seed=0)
    R = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))).Q
    with torch.no_grad():  # e -> R e, and the layer reads R^T: the same classifier, other eigenvectors in e-space
        b.embed.weight.copy_(R @ a.embed.weight)
        b.mlp.gate.weight.copy_(a.mlp.gate.weight @ R.T)
        b.mlp.in_proj.weight.copy_(a.mlp.in_proj.weight @ R.T)
    similarity = eigen_image_similarity(a, b)
    torch.testing.assert_close(similarity, torch.ones(10, 4, dtype=torch.float64), atol=1e-8, rtol=0)
    other = eigen_image_similarity(a, random_model(seed=1))
    assert other.mean() < 0.9
