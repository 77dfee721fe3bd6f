"""The training loop: the learning-rate schedule against its formula at chosen steps (linear warm-up, cosine decay,
floor), and the checkpoint folder (one run per folder, identified by a fingerprint of its model and data)."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.errors import HookedBilinearError
from hooked_bilinear.making.train import TrainConfig, data_hash, lr_at, state_hash, train
from tests.llama import tiny_llama

CONFIG = TrainConfig(steps=2, batch_size=2, seq_len=8, warmup_steps=1, checkpoint_every=1)


def tokens(seed: int) -> torch.Tensor:
    return torch.randint(0, 330, (200,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("other", ["model", "data"])
def test_a_folder_of_another_run_is_refused(tmp_path, other):
    train(tiny_llama("silu"), tokens(0), CONFIG, checkpoint_dir=tmp_path, progress=False)
    model, data = (tiny_llama("silu", seed=1), tokens(0)) if other == "model" else (tiny_llama("silu"), tokens(1))
    with pytest.raises(HookedBilinearError, match=r"written by another run \(different fingerprint"):
        train(model, data, CONFIG, checkpoint_dir=tmp_path, progress=False)
    resumed = train(tiny_llama("silu"), tokens(0), CONFIG, checkpoint_dir=tmp_path, progress=False)
    assert resumed.resumed_from == CONFIG.steps  # the same run is taken up where it was


def test_fingerprints_see_every_byte():
    model = tiny_llama("silu")
    before = state_hash(model)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 5] += 1e-7
    data = tokens(0).numpy()
    changed = data.copy()
    changed[-1] ^= 1
    assert state_hash(model) != before and data_hash(data) != data_hash(changed)


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
