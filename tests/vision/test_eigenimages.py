"""Eigen-images: logit_c(x) = sum_k lambda_ck (image_ck . x)^2 straight from the pixels, against brute-force eigh."""

from __future__ import annotations

import torch

from hooked_bilinear.vision.eigenimages import eigen_images, orient, signed_top
from tests.vision.vision_models import brute_force_eigh, random_model, random_pixels


def test_logits_from_eigen_images_and_pixels_alone():
    model = random_model()
    found = eigen_images(model)
    x = random_pixels(8)
    quadratic = torch.einsum("ck,bck->bc", found.lambda_, torch.einsum("ckp,bp->bck", found.images, x).square())
    torch.testing.assert_close(quadratic, model(x), atol=1e-10, rtol=1e-10)
    lam, v = brute_force_eigh(model)
    torch.testing.assert_close(found.lambda_, lam, atol=1e-10, rtol=1e-10)
    cosine = torch.einsum("cki,cki->ck", found.v, v).abs()
    torch.testing.assert_close(cosine, torch.ones_like(cosine), atol=1e-8, rtol=0)
    torch.testing.assert_close(found.images, found.v @ model.embed.weight.detach())


def test_top_k_and_signed_selection():
    model = random_model(bias=True)
    found = eigen_images(model, k=3)
    assert found.lambda_.shape == (10, 3) and found.images.shape == (10, 3, 64) and found.v.shape == (10, 3, 13)
    lam = torch.tensor([0.5, -2.0, 1.5, -0.1, 0.0, 3.0])
    assert signed_top(lam, 2) == ([5, 2], [1, 3])
    assert signed_top(lam, 4) == ([5, 2, 0], [1, 3])  # a zero eigenvalue is neither
    assert signed_top(torch.tensor([1.0, 2.0]), 3) == ([1, 0], [])


def test_orient_flips_against_the_reference():
    images = torch.tensor([[1.0, -2.0], [-1.0, 0.5]])
    flipped = orient(images, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(flipped, torch.tensor([[-1.0, 2.0], [-1.0, 0.5]]))
