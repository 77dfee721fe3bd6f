"""Adversarial masks: their definition against brute force, and the issue's target on the shipped digits."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.vision import adversarial_mask, from_pretrained, load_split
from hooked_bilinear.vision.adversarial import apply_mask, mask_curve
from tests.vision.vision_models import brute_force_eigh, random_model, random_pixels


def top_positive(model):
    lam, v = brute_force_eigh(model)
    index = torch.where(lam > 0, lam, torch.full_like(lam, -torch.inf)).argmax(1)
    return v[torch.arange(10), index] @ model.embed.weight.detach()  # [10, n_pixels]


@pytest.mark.parametrize("target", [0, 7])
def test_eigen_mask_is_the_scaled_top_positive_eigen_image(target):
    model = random_model()
    mask = adversarial_mask(model, target, norm=0.7)
    assert mask.shape == (64,) and mask.norm().item() == pytest.approx(0.7) and mask.sum() > 0
    image = top_positive(model)[target]
    cosine = (mask @ image).abs() / (mask.norm() * image.norm())
    assert cosine.item() == pytest.approx(1.0, abs=1e-10)


def test_pinv_mask_moves_only_the_target_direction():
    model = random_model()
    P = top_positive(model)
    mask = adversarial_mask(model, 3, norm=2.0, method="pinv")
    moved = P @ mask
    others = torch.cat([moved[:3], moved[4:]])
    assert others.abs().max().item() < 1e-8 * moved[3].abs().item() and mask.norm().item() == pytest.approx(2.0)


def test_bad_arguments_are_refused():
    model = random_model()
    with pytest.raises(ValueError, match="0..9"):
        adversarial_mask(model, 10)
    with pytest.raises(ValueError, match="method"):
        adversarial_mask(model, 1, method="fgsm")
    with pytest.raises(ValueError, match="norm must be positive"):
        adversarial_mask(model, 1, norm=0.0)


def test_apply_mask_clips_to_valid_pixels():
    x = torch.tensor([[0.0, 0.5, 1.0]])
    torch.testing.assert_close(apply_mask(x, torch.tensor([-1.0, 0.2, 0.3])), torch.tensor([[0.0, 0.7, 1.0]]))


def test_curve_counts_other_class_images_sent_to_the_target():
    model = random_model()
    x = random_pixels(40)
    labels = torch.arange(40) % 10
    curve = mask_curve(model, x, labels, [0.5], targets=[2], permutations=2)
    mask = adversarial_mask(model, 2, norm=0.5)
    predicted = model(apply_mask(x, mask)).argmax(-1)
    expected = (predicted[labels != 2] == 2).double().mean().item()
    assert curve.rate == [pytest.approx(expected)]
    assert curve.accuracy == [pytest.approx((predicted == labels).double().mean().item())]


def test_shipped_digits_masks_beat_the_permuted_baseline_5x_at_a_quarter_norm():
    model = from_pretrained("digits")
    split = load_split(model.config)
    quarter = split.test_x.norm(dim=1).mean().item() / 4
    curve = mask_curve(model, split.test_x, split.test_y, [quarter], method="eigen")
    assert curve.rate[0] >= 5 * curve.baseline_rate[0] > 0
