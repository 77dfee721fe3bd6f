"""SAELens on-disk format: bit-identical round trips, SAELens's cfg keys, hand-written SAELens folders, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from hooked_bilinear import sae as S
from hooked_bilinear.errors import SAEError

D_IN, D_SAE = 6, 24


def random_state(seed: int = 0, jumprelu: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "W_dec": torch.randn(D_SAE, D_IN, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "b_dec": torch.randn(D_IN, generator=g),
    }
    if jumprelu:
        state["threshold"] = torch.rand(D_SAE, generator=g) * 0.5
    return state


def write_folder(folder: Path, cfg: dict, state: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(state, str(folder / "sae_weights.safetensors"))
    return folder


@pytest.mark.parametrize("cls", [S.TopKSAE, S.ReLUSAE, S.JumpReLUSAE])
def test_round_trip_is_bit_identical(tmp_path: Path, cls: type) -> None:
    options = {"k": 5} if cls is S.TopKSAE else {}
    sae = cls(D_IN, D_SAE, metadata={"hook_name": "blocks.0.mlp.hook_in", "model_name": "m"}, **options)
    with torch.no_grad():
        for name, tensor in random_state(1, jumprelu=cls is S.JumpReLUSAE).items():
            getattr(sae, name).copy_(tensor)
    again = S.load(S.save(sae, tmp_path / "sae"))
    assert type(again) is cls and again.hook_name == "blocks.0.mlp.hook_in"
    for name, param in sae.named_parameters():
        assert torch.equal(getattr(again, name).view(torch.int32), param.view(torch.int32)), name
    x = torch.randn(3, D_IN)
    assert torch.equal(again.encode(x), sae.encode(x))


def test_cfg_has_saelens_keys(tmp_path: Path) -> None:
    sae = S.TopKSAE(D_IN, D_SAE, k=7, metadata={"hook_name": "blocks.1.mlp.hook_out", "trained_steps": 3})
    cfg = json.loads((S.save(sae, tmp_path / "s") / "cfg.json").read_text())
    for key in (
        "architecture",
        "d_in",
        "d_sae",
        "dtype",
        "device",
        "apply_b_dec_to_input",
        "normalize_activations",
        "reshape_activations",
        "k",
        "metadata",
    ):
        assert key in cfg, key
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"], cfg["k"], cfg["dtype"]) == (
        "topk",
        D_IN,
        D_SAE,
        7,
        "float32",
    )
    assert cfg["metadata"]["hook_name"] == "blocks.1.mlp.hook_out"
    assert "trained_steps" not in cfg["metadata"]  # SAELens's SAEMetadata takes only its own keys
    assert cfg["hooked_bilinear"] == {"trained_steps": 3}
    with pytest.raises(SAEError, match="overwrite"):
        S.save(sae, tmp_path / "s")


def test_hand_written_topk_folder_encodes_as_the_format_defines(tmp_path: Path) -> None:
    state = random_state(2)
    state["b_enc"] -= 1.5  # some of the top 4 are negative: ReLU'd to 0
    cfg = {
        "architecture": "topk",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "k": 4,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"hook_name": "blocks.0.mlp.hook_in", "sae_lens_version": "6.5.0"},
    }
    sae = S.load(write_folder(tmp_path / "topk", cfg, state))
    x = torch.randn(50, D_IN, generator=torch.Generator().manual_seed(3))
    pre = (x - state["b_dec"]) @ state["W_enc"] + state["b_enc"]
    expected = torch.zeros_like(pre)
    for row in range(pre.shape[0]):  # keep the 4 largest, then ReLU
        top = sorted(range(D_SAE), key=lambda j: -pre[row, j].item())[:4]
        for j in top:
            expected[row, j] = max(pre[row, j].item(), 0.0)
    f = sae.encode(x)
    torch.testing.assert_close(f, expected, rtol=0, atol=1e-6)
    assert ((f != 0).sum(-1) <= 4).all() and ((f != 0).sum(-1) == 4).any() and ((f != 0).sum(-1) < 4).any()
    torch.testing.assert_close(sae.decode(f), f @ state["W_dec"] + state["b_dec"])
    assert sae.hook_name == "blocks.0.mlp.hook_in"


def test_hand_written_legacy_jumprelu_and_topk_folders(tmp_path: Path) -> None:
    state = random_state(4, jumprelu=True)
    cfg = {
        "architecture": "jumprelu",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "hook_name": "blocks.1.hook_mlp_out",
        "hook_layer": 1,
        "activation_fn_str": "relu",
        "apply_b_dec_to_input": False,
        "normalize_activations": None,
        "model_name": "gemma",
    }
    sae = S.load(write_folder(tmp_path / "jump", cfg, state))
    assert isinstance(sae, S.JumpReLUSAE) and sae.hook_name == "blocks.1.hook_mlp_out"
    x = torch.randn(40, D_IN, generator=torch.Generator().manual_seed(5))
    pre = x @ state["W_enc"] + state["b_enc"]  # apply_b_dec_to_input false: b_dec not subtracted
    expected = torch.where(pre > state["threshold"], pre.clamp_min(0), torch.zeros_like(pre))
    torch.testing.assert_close(sae.encode(x), expected, rtol=0, atol=1e-6)
    assert (expected == 0).any() and (expected != 0).any()
    legacy_topk = {
        "d_in": D_IN,
        "d_sae": D_SAE,
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 3},
        "hook_point": "blocks.0.mlp.hook_in",
        "dtype": "torch.float32",
    }
    topk = S.load(write_folder(tmp_path / "ltopk", legacy_topk, random_state(6)))
    assert isinstance(topk, S.TopKSAE) and topk.k == 3 and topk.hook_name == "blocks.0.mlp.hook_in"


def test_duck_typed_saelens_object() -> None:
    state = random_state(7)
    cfg = SimpleNamespace(
        architecture=lambda: "topk",
        k=5,
        apply_b_dec_to_input=True,
        normalize_activations="none",
        metadata=SimpleNamespace(hook_name="blocks.0.mlp.hook_in"),
    )
    obj = SimpleNamespace(cfg=cfg, **state)
    sae = S.load(obj)
    assert isinstance(sae, S.TopKSAE) and sae.k == 5 and sae.hook_name == "blocks.0.mlp.hook_in"
    assert torch.equal(sae.W_enc, state["W_enc"]) and torch.equal(sae.b_dec, state["b_dec"])
    with pytest.raises(SAEError, match="W_dec"):
        S.load(SimpleNamespace(W_enc=state["W_enc"], b_enc=state["b_enc"], b_dec=state["b_dec"]))


def test_bad_folders_and_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(SAEError, match="not an SAE folder.*config.json"):
        S.load(tmp_path / "empty")
    base = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32"}
    with pytest.raises(SAEError, match="architecture 'gated' is not supported"):
        S.load(write_folder(tmp_path / "gated", {**base, "architecture": "gated"}, random_state()))
    with pytest.raises(SAEError, match="W_dec has shape"):
        S.load(
            write_folder(
                tmp_path / "shape",
                {**base, "architecture": "standard"},
                {**random_state(), "W_dec": torch.zeros(D_SAE, D_IN + 1)},
            )
        )
    with pytest.raises(SAEError, match="missing \\['threshold'\\]"):
        S.load(write_folder(tmp_path / "nothr", {**base, "architecture": "jumprelu"}, random_state()))
    with pytest.raises(SAEError, match="NaN"):
        S.load(
            write_folder(
                tmp_path / "nan",
                {**base, "architecture": "standard"},
                {**random_state(), "b_enc": torch.full((D_SAE,), float("nan"))},
            )
        )
    with pytest.raises(SAEError, match="integer 'k'"):
        S.load(write_folder(tmp_path / "nok", {**base, "architecture": "topk"}, random_state()))
    with pytest.raises(SAEError, match="layer_norm"):
        S.load(
            write_folder(
                tmp_path / "ln",
                {**base, "architecture": "standard", "normalize_activations": "layer_norm"},
                random_state(),
            )
        )
    with pytest.raises(SAEError, match="neither a shipped SAE"):
        S.load("no-such-sae")
    sae = S.ReLUSAE(D_IN, D_SAE, metadata={"hook_name": "blocks.0.mlp.hook_in"})
    with pytest.raises(SAEError, match="blocks.0.mlp.hook_in.*d_in=6.*size 7"):
        sae.encode(torch.zeros(2, D_IN + 1))
    with pytest.raises(IndexError, match="0..23"):
        sae.check_feature(D_SAE)


def test_standard_folder_and_log_threshold(tmp_path: Path) -> None:
    state = random_state(8)
    cfg = {
        "architecture": "standard",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "metadata": {"hook_name": "h", "sae_lens_version": "6.1.0"},
    }
    sae = S.load(write_folder(tmp_path / "relu", cfg, state))
    x = torch.randn(30, D_IN, generator=torch.Generator().manual_seed(9))
    expected = ((x - state["b_dec"]) @ state["W_enc"] + state["b_enc"]).clamp_min(0)
    torch.testing.assert_close(sae.encode(x), expected, rtol=0, atol=1e-6)
    jump = random_state(10, jumprelu=True)
    jump["log_threshold"] = jump.pop("threshold").log()  # SAELens's training-time parameter
    loaded = S.load(write_folder(tmp_path / "logthr", {**cfg, "architecture": "jumprelu"}, jump))
    torch.testing.assert_close(loaded.threshold, jump["log_threshold"].exp())
    obj = SimpleNamespace(
        cfg=SimpleNamespace(architecture=lambda: "jumprelu", hook_name="h2"),
        threshold=jump["log_threshold"].exp(),
        **random_state(10),
    )
    converted = S.load(obj)
    assert isinstance(converted, S.JumpReLUSAE) and converted.hook_name == "h2"
    assert torch.equal(converted.threshold, obj.threshold)
