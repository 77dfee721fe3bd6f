"""Random tdooms checkpoints loaded as hooked models, for the model-level analysis tests."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

import hooked_bilinear as hb
from tests.reference import make_config, write_checkpoint


def random_model(
    fmt: str = "current",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    compat: bool = False,
    vocab: int = 40,
    **config: Any,
) -> tuple[Any, dict, dict]:
    """(bridge, config, state) for a random checkpoint written to a temporary folder."""
    cfg = make_config(fmt, vocab=vocab, **config)
    folder = Path(tempfile.mkdtemp(prefix="hb-analysis-"))
    state = write_checkpoint(folder, cfg, vocab=vocab, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.from_pretrained(folder, dtype=dtype, compatibility_mode=compat)
    return model, cfg, state
