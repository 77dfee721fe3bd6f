"""Per-input explanations: the contributions sum to every logit."""

from __future__ import annotations

import torch

from hooked_bilinear.vision import explain_input
from tests.vision.vision_models import random_model, random_pixels


def test_contributions_sum_to_the_logits():
    model = random_model(bias=True)
    x = random_pixels(1)[0]
    explanation = explain_input(model, x)
    assert explanation.contributions.shape == (10, 13) and explanation.images.shape == (10, 13, 64)
    torch.testing.assert_close(explanation.contributions.sum(-1), model(x[None])[0].detach(), atol=1e-10, rtol=1e-10)
    v_dot_e = explanation.contributions / explanation.lambda_
    assert (v_dot_e >= -1e-12).all()  # (v . e')^2


def test_contributions_are_lambda_times_squared_pixel_overlaps():
    model = random_model()
    x = random_pixels(1, seed=4)[0]
    explanation = explain_input(model, x)
    expected = explanation.lambda_ * (explanation.images @ x).square()
    torch.testing.assert_close(explanation.contributions, expected, atol=1e-10, rtol=1e-10)
