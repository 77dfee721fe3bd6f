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


SHIPPED_LIST = ", ".join(sorted(EXPECTED))


def test_hub_ids_root_and_trailing_slash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = S.ReLUSAE(4, 8, metadata={"hook_name": "h"})
    S.save(source, tmp_path / "repo")
    S.save(source, tmp_path / "repo" / "sub")
    calls = []

    def fake_snapshot_download(repo_id: str, revision: str | None = None, allow_patterns: list | None = None) -> str:
        calls.append((repo_id, allow_patterns))
        return str(tmp_path / "repo")

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    S.load("someone/saesX")  # at the repo's root: the two files, no folder prefix; the name is kept whole
    S.load("someone/saes/sub/")  # a trailing slash names the same folder
    on_meta = S.load("someone/saes/sub", device="meta")
    assert calls == [
        ("someone/saesX", ["cfg.json", "sae_weights.safetensors"]),
        ("someone/saes", ["sub/cfg.json", "sub/sae_weights.safetensors"]),
        ("someone/saes", ["sub/cfg.json", "sub/sae_weights.safetensors"]),
    ]
    assert on_meta.W_enc.device.type == "meta"


def test_device_is_honoured_for_every_source(tmp_path: Path) -> None:
    from types import SimpleNamespace

    folder = S.save(S.ReLUSAE(4, 8), tmp_path / "sae")
    state = {name: torch.randn(p.shape) for name, p in S.ReLUSAE(4, 8).named_parameters()}
    for source in (EXPECTED[0], folder, str(folder), SimpleNamespace(**state)):
        assert S.load(source, device="meta").W_enc.device.type == "meta", source
        assert S.load(source).W_enc.device.type == "cpu", source


def test_unknown_names_list_the_shipped_saes(tmp_path: Path) -> None:
    for text in ("./nope/sae", "/nope/sae", "~/nope/sae", "nope"):  # paths, not Hub ids: never sent to the Hub
        with pytest.raises(SAEError) as info:
            S.load(text)
        assert str(info.value) == (
            f"{text!r} is neither a shipped SAE ({SHIPPED_LIST}), an existing folder, nor a Hub id (owner/name[/folder])."
        )
    with pytest.raises(SAEError) as info:
        S.load("ts-synthetic-2l")  # a shipped model, not an SAE: pointed to the model loader
    assert str(info.value).startswith("'ts-synthetic-2l' is a shipped language model, not an SAE: load it with ")
    assert str(info.value).endswith(f"Shipped SAEs: {SHIPPED_LIST}.")
    with pytest.raises(SAEError) as info:
        S.load("nobody-hb-test/no-such-sae-repo")
    assert str(info.value).startswith(
        f"SAE 'nobody-hb-test/no-such-sae-repo' is not a shipped SAE ({SHIPPED_LIST}), nor a local folder; as a Hub id: "
    )
