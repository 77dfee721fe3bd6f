"""Outlier energy and the other eigen-image statistics: their definition on built cases, and the shipped pair."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.vision import (
    VisionConfig,
    from_pretrained,
    load_split,
    noise_sweep,
    overfitting_stats,
)
from hooked_bilinear.vision.overfitting import rare_pixels
from tests.vision.vision_models import random_model


def train_pixels() -> torch.Tensor:
    x = torch.zeros(10, 64, dtype=torch.float64)
    x[:, :40] = 0.5  # the first 40 pixels are inked, the last 24 rare
    return x


def test_outlier_energy_is_the_share_on_rare_pixels():
    x = train_pixels()
    assert rare_pixels(x).tolist() == [False] * 40 + [True] * 24
    model = random_model()
    with torch.no_grad():
        model.embed.weight[:, 40:] = 0.0
    stats = overfitting_stats(model, x)
    assert stats.outlier_energy == 0.0 and stats.rare_pixels == 24
    with torch.no_grad():
        model.embed.weight[:, :40] = 0.0
        model.embed.weight[:, 40:] = torch.randn(12, 24, dtype=torch.float64)
    assert overfitting_stats(model, x).outlier_energy == pytest.approx(1.0)


def test_high_frequency_and_rank_on_built_cases():
    model = random_model()
    with torch.no_grad():  # the layer reads only e_0, which reads a constant image: rank 1, no high frequency
        model.mlp.gate.weight[:, 1:] = 0.0
        model.mlp.in_proj.weight[:, 1:] = 0.0
        model.embed.weight[0] = 1.0
    stats = overfitting_stats(model, train_pixels(), k=1)
    assert stats.high_frequency == pytest.approx(0.0, abs=1e-12)
    assert stats.effective_rank == pytest.approx(1.0)


def test_no_rare_pixel_is_an_error():
    with pytest.raises(ValueError, match="threshold"):
        overfitting_stats(random_model(), torch.ones(3, 64))


def test_shipped_noreg_attends_to_outlying_pixels():
    split = load_split(from_pretrained("digits").config)
    regularised = overfitting_stats(from_pretrained("digits"), split.train_x)
    noreg = overfitting_stats(from_pretrained("digits-noreg"), split.train_x)
    assert noreg.outlier_energy > 5 * regularised.outlier_energy


def test_noise_sweep_trains_one_model_per_std():
    config = VisionConfig(d_model=8, d_hidden=8, epochs=1, batch_size=256)
    split = load_split(config)
    sweep = noise_sweep(config, split, [0.0, 0.5])
    assert sweep.noise_std == [0.0, 0.5] and len(sweep.stats) == len(sweep.test_accuracy) == 2
    assert sweep.stats[0] != sweep.stats[1]
