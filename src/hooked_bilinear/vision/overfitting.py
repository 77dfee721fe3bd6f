"""Overfitting read from the weights (the papers' Fig. 4): statistics of the eigen-images and the spectra.

The statistic that separates the shipped `digits-noreg` from `digits`: the **outlier energy**, the share of the
squared norm of each class's top-k eigen-images (by |lambda|) that lies on rarely inked pixels (mean training
intensity below `threshold`: the border of the 8x8 digits), averaged over classes. A model that memorises reads the
odd stroke on those pixels; input noise teaches it that they carry nothing. Next to it: the effective rank of the
spectra `(||lambda||_1 / ||lambda||_2)^2` and the high-frequency energy of the top eigen-images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import torch
from beartype import beartype
from jaxtyping import Bool, Float, jaxtyped

from hooked_bilinear.analysis.spectrum import spectrum_stats
from hooked_bilinear.vision.config import VisionConfig
from hooked_bilinear.vision.data import Split
from hooked_bilinear.vision.eigenimages import eigen_images
from hooked_bilinear.vision.model import BilinearClassifier
from hooked_bilinear.vision.train import accuracy, train_classifier


class OverfittingStats(NamedTuple):
    """outlier_energy, effective_rank (mean over classes), high_frequency (mean squared difference of neighbouring
    pixels over the squared norm, top-k eigen-images), and the number of rare pixels the first is measured on."""

    outlier_energy: float
    effective_rank: float
    high_frequency: float
    rare_pixels: int


@jaxtyped(typechecker=beartype)
def rare_pixels(
    train_pixels: Float[torch.Tensor, "n n_pixels"], threshold: float = 0.05
) -> Bool[torch.Tensor, " n_pixels"]:
    """Boolean [n_pixels]: pixels whose mean training intensity is below `threshold`."""
    return train_pixels.double().mean(0) < threshold


@jaxtyped(typechecker=beartype)
def overfitting_stats(
    model: BilinearClassifier, train_pixels: Float[torch.Tensor, "n n_pixels"], k: int = 4, threshold: float = 0.05
) -> OverfittingStats:
    """The statistics of the module doc for one model (the rare pixels from its training images).

    Args:
        model: the classifier.
        train_pixels: its training images [n, n_pixels], which give the rare pixels.
        k: the number of top eigen-images (by |lambda|) per class measured (default 4).
        threshold: the mean training intensity below which a pixel is rare (default 0.05).

    Returns:
        `OverfittingStats`: outlier_energy, effective_rank, high_frequency and the number of rare pixels.

    Raises:
        ValueError: no pixel is rare at this threshold.
    """
    found = eigen_images(model)
    rare = rare_pixels(train_pixels, threshold)
    if not rare.any():
        raise ValueError(f"no pixel has mean training intensity below threshold={threshold}: raise the threshold.")
    images = found.images[:, :k]
    energy = images.square()
    outlier = (energy[..., rare].sum(-1) / energy.sum(-1)).mean().item()
    height, width = model.config.image_shape
    grid = images.reshape(*images.shape[:-1], height, width)
    rough = grid.diff(dim=-1).square().sum((-1, -2)) + grid.diff(dim=-2).square().sum((-1, -2))
    high = (rough / energy.sum(-1)).mean().item()
    rank = spectrum_stats(found.lambda_).effective_rank.mean().item()
    return OverfittingStats(outlier, rank, high, int(rare.sum()))


class NoiseSweep(NamedTuple):
    """Per input-noise std: test accuracy, train accuracy and the statistics."""

    noise_std: list[float]
    test_accuracy: list[float]
    train_accuracy: list[float]
    stats: list[OverfittingStats]


@beartype
def noise_sweep(config: VisionConfig, split: Split, stds: Sequence[float], progress: bool = False) -> NoiseSweep:
    """Train `config` once per input-noise std (everything else equal) and measure each model.

    Args:
        config: the training configuration; its noise_std is replaced by each std in turn.
        split: the train / test split every model trains and is measured on.
        stds: the input-noise standard deviations.
        progress: show each training's progress bar (default False).

    Returns:
        A `NoiseSweep`: per std, the test and train accuracy and the `overfitting_stats` (default k and threshold).
    """
    sweep = NoiseSweep([], [], [], [])
    for std in stds:
        model, _ = train_classifier(replace(config, noise_std=float(std)), split, progress=progress)
        sweep.noise_std.append(float(std))
        sweep.test_accuracy.append(accuracy(model, split.test_x, split.test_y))
        sweep.train_accuracy.append(accuracy(model, split.train_x, split.train_y))
        sweep.stats.append(overfitting_stats(model, split.train_x))
    return sweep
