"""The training loop's checkpoint folder: one run per folder, identified by a fingerprint of its model and data."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.errors import HookedBilinearError
from hooked_bilinear.making.train import TrainConfig, data_hash, state_hash, train
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
