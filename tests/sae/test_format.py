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


# --- cfg.json as written, checked against SAELens 6's layout (docs/sae.md), not against this package's constants ---


def saved_cfg(sae: S.SAE, folder: Path) -> tuple[dict, str]:
    text = (S.save(sae, folder) / "cfg.json").read_text()
    return json.loads(text), text


def test_written_cfg_declares_a_saelens_6_version_and_the_cpu(tmp_path: Path) -> None:
    cfg, text = saved_cfg(S.ReLUSAE(D_IN, D_SAE, metadata={"hook_name": "h"}), tmp_path / "a")
    for key in ("sae_lens_version", "sae_lens_training_version"):  # SAELens converts < 6.0 layouts; these are 6
        major = int(str(cfg["metadata"][key]).split(".")[0])
        assert major >= 6, (key, cfg["metadata"][key])
    assert cfg["device"] == "cpu"  # where the weights are loaded (the safetensors hold CPU tensors)
    assert text.endswith("}\n") and '\n  "architecture": "standard",\n' in text  # indented, one key per line
    kept = S.ReLUSAE(D_IN, D_SAE, metadata={"hook_name": "h", "sae_lens_version": "6.1.0"})
    assert saved_cfg(kept, tmp_path / "b")[0]["metadata"]["sae_lens_version"] == "6.1.0"  # a given version is kept


def test_save_keeps_the_folders_other_files_and_replaces_only_the_sae(tmp_path: Path) -> None:
    folder = tmp_path / "sae"
    first = S.ReLUSAE(D_IN, D_SAE, metadata={"hook_name": "h"})
    S.save(first, folder)
    (folder / "notes.txt").write_text("mine")
    (folder / "plots").mkdir()
    (folder / "plots" / "a.txt").write_text("plot")
    second = S.ReLUSAE(D_IN, D_SAE, metadata={"hook_name": "h"})
    with torch.no_grad():
        second.b_dec.fill_(3.0)
    S.save(second, folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "plots" / "a.txt").read_text() == "plot"
    assert torch.equal(S.load(folder).b_dec, second.b_dec)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == [
        "sae"
    ]  # no hidden partial folder left beside it


def test_failed_save_raises_write_error_and_keeps_the_old_sae(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from hooked_bilinear.errors import WriteError
    from hooked_bilinear.sae import format as fmt

    folder = tmp_path / "sae"
    old = S.ReLUSAE(D_IN, D_SAE, metadata={"hook_name": "h"})
    S.save(old, folder)
    (folder / "notes.txt").write_text("mine")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fmt, "save_file", disk_full)
    with pytest.raises(WriteError, match=str(folder.name)):
        S.save(S.ReLUSAE(D_IN, D_SAE), folder, overwrite=True)

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug, not the disk")

    monkeypatch.setattr(fmt, "save_file", bug)
    with pytest.raises(RuntimeError, match="a bug, not the disk"):  # not disguised as a write error
        S.save(S.ReLUSAE(D_IN, D_SAE), folder, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == [
        "sae"
    ]  # the partial folders were removed
    assert torch.equal(S.load(folder).W_enc, old.W_enc) and (folder / "notes.txt").read_text() == "mine"


BASE_CFG = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32"}


def load_cfg(tmp_path: Path, name: str, state: dict[str, torch.Tensor] | None = None, **cfg: object) -> S.SAE:
    return S.load(write_folder(tmp_path / name, {**BASE_CFG, **cfg}, random_state() if state is None else state))


def test_cfg_metadata_legacy_places(tmp_path: Path) -> None:
    assert load_cfg(tmp_path, "meta", meta={"hook_name": "old"}).hook_name == "old"  # SAELens 5's "meta"
    assert load_cfg(tmp_path, "top", hook_point="legacy").hook_name == "legacy"  # SAELens < 5 at the top level
    both = load_cfg(tmp_path, "both", metadata={"hook_name": "inner"}, hook_name="outer")
    assert both.hook_name == "inner"  # a top-level key fills only what metadata lacks


def test_cfg_values_accepted(tmp_path: Path) -> None:
    x = torch.randn(4, D_IN, generator=torch.Generator().manual_seed(3))
    reference = load_cfg(tmp_path, "ref").encode(x)
    accepted: list[dict[str, object]] = [
        {"activation_fn": "relu"},
        {"activation_fn": None},
        {"normalize_activations": False},
        {"normalize_activations": None},
        {"normalize_activations": "expected_average_only_in"},  # folded at training time: no run-time transform
        {"reshape_activations": None},
        {"finetuning_scaling_factor": False},
    ]
    for i, extra in enumerate(accepted):
        assert torch.equal(load_cfg(tmp_path, f"ok{i}", **extra).encode(x), reference), extra
    no_dtype = {key: value for key, value in BASE_CFG.items() if key != "dtype"}
    assert S.load(write_folder(tmp_path / "nodtype", no_dtype, random_state())).W_enc.dtype == torch.float32
    for name, dtype in (("float64", torch.float64), ("torch.float64", torch.float64), ("bfloat16", torch.bfloat16)):
        sae = load_cfg(tmp_path, name, dtype=name)
        assert all(p.dtype == dtype for p in sae.parameters()), name
        assert torch.equal(sae.W_enc, random_state()["W_enc"].to(dtype))
    one = {"W_enc": torch.ones(1, 1), "W_dec": torch.ones(1, 1), "b_enc": torch.zeros(1), "b_dec": torch.zeros(1)}
    assert load_cfg(tmp_path, "one", one, d_in=1, d_sae=1).d_sae == 1  # 1 is a positive integer


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"architecture": "gated"},
            "architecture 'gated' is not supported; this package reads jumprelu, standard, topk",
        ),
        ({"activation_fn": "tanh"}, "a standard SAE with activation_fn 'tanh' is not supported (only relu)"),
        ({"d_in": 0}, "cfg.json needs a positive integer 'd_in', got 0"),
        ({"d_sae": True}, "cfg.json needs a positive integer 'd_sae', got True"),
        ({"d_in": "6"}, "cfg.json needs a positive integer 'd_in', got '6'"),
        ({"d_sae": 2.0}, "cfg.json needs a positive integer 'd_sae', got 2.0"),
        ({"normalize_activations": True}, "normalize_activations=True"),
        ({"reshape_activations": "hook_z"}, "reshape_activations='hook_z' (attention hook_z SAEs) is not supported"),
        ({"finetuning_scaling_factor": True}, "finetuning_scaling_factor is set; such SAEs are not supported"),
        ({"rescale_acts_by_decoder_norm": True}, "rescale_acts_by_decoder_norm is set"),
        ({"dtype": "int8"}, "dtype 'int8' is not a floating-point dtype name (float32, float64, float16, bfloat16"),
        ({"architecture": "topk", "k": True}, "a TopK SAE's cfg.json needs an integer 'k', got True"),
        ({"architecture": "topk", "k": D_SAE + 1}, "k"),
    ],
)
def test_cfg_refusals_name_the_folder_and_the_problem(tmp_path: Path, extra: dict, message: str) -> None:
    with pytest.raises(SAEError) as info:
        load_cfg(tmp_path, "bad", **extra)
    assert str(info.value).startswith(f"{tmp_path / 'bad'}: "), str(info.value)
    assert message in str(info.value)


def test_weight_names_are_checked_both_ways(tmp_path: Path) -> None:
    extra = {**random_state(), "scaling": torch.ones(D_SAE)}
    with pytest.raises(SAEError) as info:
        load_cfg(tmp_path, "extra", extra)
    assert str(info.value) == (
        f"{tmp_path / 'extra'}: a standard SAE's weights are W_dec, W_enc, b_dec, b_enc; "
        "missing none, unexpected ['scaling']."
    )
    with pytest.raises(SAEError) as info:
        load_cfg(tmp_path, "nothr", architecture="jumprelu")
    assert str(info.value).endswith("missing ['threshold'], unexpected none.")
    both = random_state(jumprelu=True)
    both["log_threshold"] = both["threshold"].log()
    with pytest.raises(SAEError, match=r"unexpected \['log_threshold'\]"):  # ambiguous: which threshold?
        load_cfg(tmp_path, "both", both, architecture="jumprelu")
    with pytest.raises(SAEError) as info:
        load_cfg(tmp_path, "shape", {**random_state(), "b_enc": torch.zeros(D_SAE + 1)})
    assert str(info.value) == (
        f"{tmp_path / 'shape'}: b_enc has shape ({D_SAE + 1},), but cfg.json (d_in={D_IN}, d_sae={D_SAE}) needs "
        f"({D_SAE},)."
    )
    with pytest.raises(SAEError, match=r"W_dec holds torch.int64 values, not floating point"):
        load_cfg(tmp_path, "int", {**random_state(), "W_dec": torch.ones(D_SAE, D_IN, dtype=torch.int64)})


def test_load_folder_device_and_folder_errors(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "sae", BASE_CFG, random_state())
    assert S.load(folder).W_enc.device.type == "cpu"
    on_meta = S.format.load_folder(folder, device="meta")
    assert all(p.device.type == "meta" for p in on_meta.parameters())
    with pytest.raises(SAEError, match=r"is not a folder; an SAE is a folder holding cfg.json and sae_weights"):
        S.format.load_folder(tmp_path / "missing")
    (tmp_path / "cfgonly").mkdir()
    (tmp_path / "cfgonly" / "cfg.json").write_text(json.dumps(BASE_CFG))
    with pytest.raises(SAEError, match=r"cfgonly is not an SAE folder: .* and holds cfg.json\.$"):
        S.format.load_folder(tmp_path / "cfgonly")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SAEError, match=r"and holds nothing\.$"):
        S.format.load_folder(tmp_path / "empty")
    (tmp_path / "many").mkdir()
    for i in range(10):
        (tmp_path / "many" / f"f{i}.txt").write_text("")
    with pytest.raises(SAEError) as info:
        S.format.load_folder(tmp_path / "many")
    assert str(info.value).endswith("holds f0.txt, f1.txt, f2.txt, f3.txt, f4.txt, f5.txt, f6.txt, f7.txt.")
    (folder / "cfg.json").write_text("{not json")
    with pytest.raises(SAEError, match=r"cfg.json is not valid JSON \("):
        S.format.load_folder(folder)
    (folder / "cfg.json").write_text("[1, 2]")
    with pytest.raises(SAEError, match=r"cfg.json must hold a JSON object, got list\."):
        S.format.load_folder(folder)
    (folder / "cfg.json").write_text(json.dumps(BASE_CFG))
    (folder / "sae_weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(SAEError, match=r"sae_weights.safetensors is not a readable safetensors file"):
        S.format.load_folder(folder)


class FakeSAE:
    """A duck-typed SAE (SAELens's attributes, set per test)."""

    def __init__(self, **attributes: object) -> None:
        self.__dict__.update(attributes)


def test_from_object_reads_settings_from_the_object_or_its_cfg() -> None:
    state = random_state(4)
    x = torch.randn(5, D_IN, generator=torch.Generator().manual_seed(5))
    plain = S.load(FakeSAE(**state))  # no cfg, no architecture: a standard SAE subtracting b_dec
    assert type(plain) is S.ReLUSAE and plain.apply_b_dec_to_input is True and plain.hook_name is None
    torch.testing.assert_close(plain.encode(x), ((x - state["b_dec"]) @ state["W_enc"] + state["b_enc"]).relu())
    own = S.load(FakeSAE(architecture="topk", k=3, hook_name="h.obj", apply_b_dec_to_input=False, **state))
    assert type(own) is S.TopKSAE and own.k == 3 and own.hook_name == "h.obj" and own.apply_b_dec_to_input is False
    cfg = SimpleNamespace(meta=SimpleNamespace(hook_name="h.meta"), apply_b_dec_to_input=False)
    old = S.load(FakeSAE(cfg=cfg, apply_b_dec_to_input=True, **state))
    assert old.hook_name == "h.meta" and old.apply_b_dec_to_input is False  # cfg's setting wins
    bare_cfg = S.load(FakeSAE(cfg=SimpleNamespace(), **state))
    assert bare_cfg.apply_b_dec_to_input is True
    wide = S.load(FakeSAE(**{name: t.double() for name, t in state.items()}))
    assert all(p.dtype == torch.float64 for p in wide.parameters())
    assert torch.equal(wide.W_dec, state["W_dec"].double())


def test_from_object_refusals_name_the_objects_type() -> None:
    state = random_state(6)
    with pytest.raises(SAEError) as info:
        S.load(FakeSAE(W_enc=state["W_enc"], b_dec=state["b_dec"]))
    assert str(info.value).startswith("FakeSAE is not an SAE: ")
    assert str(info.value).endswith("missing W_dec, b_enc.")
    cfg = SimpleNamespace(normalize_activations="layer_norm")
    with pytest.raises(SAEError, match=r"^FakeSAE: normalize_activations='layer_norm'"):
        S.load(FakeSAE(cfg=cfg, **state))
    with pytest.raises(SAEError, match=r"^FakeSAE: b_dec has shape"):
        S.load(FakeSAE(**{**state, "b_dec": torch.zeros(D_IN + 2)}))
