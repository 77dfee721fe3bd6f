"""Shipped SAEs and where SAEs come from: shipped names, folders, Hub ids (through a stand-in for the Hub)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hooked_bilinear import sae as S
from hooked_bilinear.errors import SAEError
from hooked_bilinear.loading import hub

EXPECTED = [f"ts-synthetic-2l/blocks.{layer}.mlp.{side}" for layer in (0, 1) for side in ("hook_in", "hook_out")]


def test_shipped_saes_load_with_their_hooks() -> None:
    assert S.shipped() == sorted(EXPECTED)
    for name in S.shipped():
        sae = S.load(name)
        assert isinstance(sae, S.TopKSAE)
        assert (sae.d_in, sae.d_sae, sae.k) == (128, 512, 30)
        assert sae.hook_name == name.split("/", 1)[1]
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(512), rtol=0, atol=1e-5)
        assert torch.equal(sae.b_enc, torch.zeros(512))
        assert sae.metadata["eval"]["fvu"] < 0.25


def test_hub_ids_go_through_snapshot_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = S.load(EXPECTED[0])
    S.save(source, tmp_path / "repo" / "layer0" / "in")
    calls = []

    def fake_snapshot_download(repo_id: str, revision: str | None = None, allow_patterns: list | None = None) -> str:
        calls.append((repo_id, revision, allow_patterns))
        return str(tmp_path / "repo")

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    loaded = S.load("someone/saes/layer0/in", revision="v1")
    assert calls == [("someone/saes", "v1", ["layer0/in/cfg.json", "layer0/in/sae_weights.safetensors"])]
    assert torch.equal(loaded.W_dec, source.W_dec)


def test_offline_hub_id_is_a_clear_error() -> None:
    with pytest.raises(SAEError, match="not in the Hugging Face cache and HF_HUB_OFFLINE is set"):
        S.load("nobody-hb-test/no-such-sae-repo")
