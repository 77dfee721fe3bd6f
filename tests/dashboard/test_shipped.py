"""The shipped held-out token set is what scripts/dashboard_tokens.py makes (seed-3 stories, unseen in training)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from hooked_bilinear.dashboard.shipped import HELDOUT_SEED, HELDOUT_STORIES, frequent_tokens, heldout_tokens
from hooked_bilinear.sae.train import pack_texts

TRAIN_EMBEDDED = Path(__file__).resolve().parents[2] / "scripts" / "train_embedded.py"


def test_heldout_tokens_are_reproducible(shipped_model) -> None:
    """What scripts/dashboard_tokens.py writes: make_corpus (scripts/train_embedded.py) packed as in training."""
    spec = importlib.util.spec_from_file_location("train_embedded", TRAIN_EMBEDDED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    corpus = module.make_corpus(HELDOUT_STORIES, HELDOUT_SEED)
    tokens = pack_texts(shipped_model.tokenizer, corpus, shipped_model.cfg.n_ctx)
    assert torch.equal(tokens, heldout_tokens()) and tokens.shape == (108, 128)
    assert not set(corpus) & set(module.make_corpus(HELDOUT_STORIES, 0)), "held-out stories overlap training ones"


def test_frequent_tokens_leave_out_special_ones(shipped_model) -> None:
    tokens = heldout_tokens()
    ids = frequent_tokens(shipped_model, tokens, 5)
    counts = torch.bincount(tokens.reshape(-1))
    assert not set(ids) & set(shipped_model.tokenizer.all_special_ids)
    assert [counts[i] for i in ids] == sorted((counts[i] for i in ids), reverse=True)
