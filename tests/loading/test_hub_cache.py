"""Hub ids resolve through the huggingface_hub cache (offline here), with revisions and config-named tokenizers."""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

import hooked_bilinear as hb
from tests.reference import EMBEDDED, make_config, reference_logits, write_checkpoint

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(cache: Path, repo_id: str, source: Path, commit: str = COMMIT, ref: str = "main") -> None:
    """Lay out `source`'s files as huggingface_hub caches a downloaded snapshot of `repo_id`."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        shutil.copy(file, snapshot / file.name)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / ref).write_text(commit)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    # huggingface_hub reads HF_HUB_CACHE once, at import; its constant is what snapshot_download consults per call.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_cached_hub_id_loads_offline_with_config_named_tokenizer(hub_cache, tmp_path, tokens):
    embedded = Path(hb.__file__).parent / "checkpoints" / EMBEDDED
    tokenizer_files = tmp_path / "tok"
    tokenizer_files.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedded / name, tokenizer_files / name)
    cache_repo(hub_cache, "tdooms/ts-tokenizer-4096", tokenizer_files)
    config = make_config("current", vocab=330)
    config["tokenizer"] = "ts-4096"  # docs/formats.md: names the Hub tokenizer tdooms/ts-tokenizer-4096
    state = write_checkpoint(tmp_path / "model", config, vocab=330)
    cache_repo(hub_cache, "tdooms/ts-random", tmp_path / "model")

    bridge = hb.from_pretrained("tdooms/ts-random")
    assert bridge.tokenizer is not None and bridge.tokenizer.pad_token == "[EOS]"
    text_tokens = bridge.to_tokens("lily found a ball .")
    assert text_tokens[0, 0].item() == 1
    expected = reference_logits(state, config, text_tokens)
    assert (bridge(text_tokens, return_type="logits") - expected).abs().max() <= 1e-5


def test_revision_selects_the_cached_commit(hub_cache, tmp_path, tokens):
    old_config, new_config = make_config("current"), make_config("current", bias=True)
    old = write_checkpoint(tmp_path / "old", old_config, seed=1)
    write_checkpoint(tmp_path / "new", new_config, seed=2)
    other = "fedcba9876543210fedcba9876543210fedcba98"
    cache_repo(hub_cache, "someone/model", tmp_path / "new")
    cache_repo(hub_cache, "someone/model", tmp_path / "old", commit=other, ref="v1")
    with pytest.warns(UserWarning, match="no tokenizer"):
        bridge = hb.from_pretrained("someone/model", revision="v1")
    assert torch.allclose(bridge(tokens, return_type="logits"), reference_logits(old, old_config, tokens), atol=1e-5)
    with pytest.raises(hb.CheckpointNotFoundError, match="revision v2"):
        hb.from_pretrained("someone/model", revision="v2")


def test_offline_uncached_hub_id(hub_cache):
    with pytest.raises(hb.CheckpointNotFoundError, match="not in the Hugging Face cache and HF_HUB_OFFLINE is set"):
        hb.from_pretrained("tdooms/ts-medium")
