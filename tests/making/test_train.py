"""The bilinearize learning-rate schedule against its formula at chosen steps: linear warm-up, cosine decay, floor."""

from __future__ import annotations

import pytest

from hooked_bilinear.making.train import TrainConfig, lr_at


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 1e-4),  # warm-up: lr (step + 1) / warmup_steps
        (4, 5e-4),
        (9, 1e-3),
        (10, 1e-3),  # decay starts at lr
        (60, 1e-3 * (0.2 + 0.8 * 0.5)),  # half way: cos(pi / 2) = 0
        (85, 1e-3 * (0.2 + 0.8 * 0.5 * (1 - 2**-0.5))),  # three quarters: cos(3 pi / 4) = -1 / sqrt 2
        (110, 2e-4),  # the last step: the floor min_lr_ratio * lr
        (500, 2e-4),  # and it stays there
    ],
)
def test_lr_at_is_warmup_then_cosine_down_to_the_floor(step, expected):
    config = TrainConfig(steps=110, warmup_steps=10, lr=1e-3, min_lr_ratio=0.2)
    assert lr_at(step, config) == pytest.approx(expected, rel=1e-12)


def test_lr_at_without_a_floor_reaches_zero():
    config = TrainConfig(steps=110, warmup_steps=10, lr=1e-3, min_lr_ratio=0.0)
    assert lr_at(110, config) == pytest.approx(0.0, abs=1e-18)
    assert lr_at(60, config) == pytest.approx(5e-4, rel=1e-12)
