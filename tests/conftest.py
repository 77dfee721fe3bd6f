"""Shared fixtures. No test touches the network: the Hub is switched off for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.reference import make_config, write_checkpoint  # noqa: E402


@pytest.fixture
def checkpoint(tmp_path: Path):
    """Factory: write a random tdooms checkpoint; returns (folder, config, state)."""

    def make(fmt: str = "current", vocab: int = 50, seed: int = 0, weights: str = "safetensors", **overrides):
        config = make_config(fmt, vocab=vocab, **overrides)
        folder = tmp_path / f"ckpt-{fmt}-{seed}-{weights}"
        state = write_checkpoint(folder, config, vocab=vocab, seed=seed, weights=weights)
        return folder, config, state

    return make


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 50, (2, 11), generator=torch.Generator().manual_seed(1))
