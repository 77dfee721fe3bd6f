"""Truncated classifiers equal the brute-force top-k eigen-sums; the shipped digits keeps its accuracy at k = 8."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.vision import from_pretrained, load_split
from hooked_bilinear.vision.truncation import truncated_logits, truncation_accuracy
from tests.vision.vision_models import brute_force_eigh, random_model, random_pixels


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_truncated_logits_are_the_top_k_eigen_sums(bias, k):
    model = random_model(bias=bias)
    x = random_pixels(6)
    lam, v = brute_force_eigh(model)
    e = model.augment(x @ model.embed.weight.T.detach())
    expected = torch.einsum("ck,bck->bc", lam[:, :k], torch.einsum("cki,bi->bck", v[:, :k], e).square())
    module = model.mlp.truncate(model.class_directions(), k=k, dtype=torch.float64)
    torch.testing.assert_close(truncated_logits(model, x, module), expected, atol=1e-10, rtol=1e-10)


def test_all_components_reproduce_the_model_and_none_gives_zero():
    model = random_model()
    x = random_pixels(6)
    full = model.mlp.truncate(model.class_directions(), k=12, dtype=torch.float64)
    torch.testing.assert_close(truncated_logits(model, x, full), model(x).detach(), atol=1e-10, rtol=1e-10)
    assert torch.equal(truncated_logits(model, x, None), torch.zeros(6, 10, dtype=torch.float64))


def test_bad_ks_are_refused():
    model = random_model()
    with pytest.raises(ValueError, match="0..12"):
        truncation_accuracy(model, random_pixels(2), torch.zeros(2, dtype=torch.long), [0, 13])


def test_shipped_digits_top8_within_1_5_points():
    model = from_pretrained("digits")
    split = load_split(model.config)
    result = truncation_accuracy(model, split.test_x, split.test_y, [0, 8, 64])
    assert result.accuracy[2] == result.full >= 0.97
    assert result.accuracy[0] == pytest.approx(0.1, abs=0.01)  # no component: all logits 0, argmax class 0
    assert result.full - result.accuracy[1] <= 0.015


def test_truncation_accuracy_counts_the_top_k_predictions():
    model = random_model()
    x = random_pixels(30)
    labels = model(x).argmax(-1).roll(1)  # labels that some truncations get right and others wrong
    lam, v = brute_force_eigh(model)
    e = x @ model.embed.weight.T.detach()
    result = truncation_accuracy(model, x, labels, [2, 5])
    for k, got in zip([2, 5], result.accuracy, strict=True):
        logits = torch.einsum("ck,bck->bc", lam[:, :k], torch.einsum("cki,bi->bck", v[:, :k], e).square())
        assert got == (logits.argmax(-1) == labels).double().mean().item()
