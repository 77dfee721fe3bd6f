"""The shipped model and a few random token rows, shared by the activation tests."""

from __future__ import annotations

import warnings

import pytest
import torch


@pytest.fixture(scope="session")
def model():
    import hooked_bilinear as hb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hb.from_pretrained("ts-synthetic-2l")


@pytest.fixture(scope="session")
def rows(model) -> torch.Tensor:
    """12 sequences of the model's context (128), random tokens (no BOS / EOS: ids 5 and up)."""
    return torch.randint(5, model.cfg.d_vocab, (12, model.cfg.n_ctx), generator=torch.Generator().manual_seed(0))
