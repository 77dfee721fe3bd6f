"""Bad input: each gets a clear error naming the problem, never a silent fallback."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import save_file

import hooked_bilinear as hb


def rewrite_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    for key, value in list(changes.items()):
        if value is ...:
            del config[key]
    (folder / "config.json").write_text(json.dumps(config))


def rewrite_state(folder, state):
    save_file(state, str(folder / "model.safetensors"))


def test_missing_keys_are_listed(checkpoint):
    folder, _, state = checkpoint()
    del state["transformer.h.1.mlp.p.weight"], state["lm_head.weight"]
    rewrite_state(folder, state)
    with pytest.raises(
        hb.CheckpointWeightsError, match=r"missing weight keys \['lm_head.weight', 'transformer.h.1.mlp.p.weight'\]"
    ):
        hb.from_pretrained(folder)


def test_unexpected_keys_are_listed(checkpoint):
    folder, _, state = checkpoint()
    state["transformer.h.0.mlp.extra.weight"] = torch.zeros(2)
    rewrite_state(folder, state)
    with pytest.raises(
        hb.CheckpointWeightsError, match=r"unexpected weight keys \['transformer.h.0.mlp.extra.weight'\]"
    ):
        hb.from_pretrained(folder)


def test_shape_mismatch_names_key_and_shapes(checkpoint):
    folder, _, state = checkpoint()
    state["transformer.h.0.mlp.w.weight"] = torch.zeros(90, 32)
    rewrite_state(folder, state)
    with pytest.raises(
        hb.CheckpointWeightsError,
        match=r"transformer.h.0.mlp.w.weight: config implies \(96, 32\), checkpoint has \(90, 32\)",
    ):
        hb.from_pretrained(folder)


def test_unknown_gate(checkpoint):
    folder, _, _ = checkpoint()
    rewrite_config(folder, gate="tanh")
    with pytest.raises(hb.CheckpointFormatError, match="Unknown gate 'tanh'"):
        hb.from_pretrained(folder)


def test_config_matching_no_format(checkpoint):
    folder, _, _ = checkpoint()
    rewrite_config(folder, model_type="gpt2", d_hidden=...)
    with pytest.raises(
        hb.CheckpointFormatError,
        match=r"matches no known checkpoint format \(model_type='gpt2', missing \['d_hidden'\]\)",
    ):
        hb.from_pretrained(folder)


def test_d_model_not_divisible_by_n_head(checkpoint):
    folder, _, _ = checkpoint()
    rewrite_config(folder, n_head=5)
    with pytest.raises(hb.CheckpointFormatError, match="d_model=32 is not divisible by n_head=5"):
        hb.from_pretrained(folder)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_or_truncated_safetensors(checkpoint, damage):
    folder, _, _ = checkpoint()
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07" * 64)
    with pytest.raises(hb.CheckpointWeightsError, match="model.safetensors is corrupt or truncated"):
        hb.from_pretrained(folder)


def test_corrupt_bin(checkpoint):
    folder, _, _ = checkpoint(weights="bin")
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(hb.CheckpointWeightsError, match="weights_only=True"):
        hb.from_pretrained(folder)


def test_directory_without_weights(checkpoint):
    folder, _, _ = checkpoint()
    (folder / "model.safetensors").unlink()
    with pytest.raises(hb.CheckpointWeightsError, match="has no weights: expected one of"):
        hb.from_pretrained(folder)


def test_directory_without_config(tmp_path):
    with pytest.raises(hb.CheckpointFormatError, match="has no config.json"):
        hb.from_pretrained(tmp_path)


def test_unknown_short_name():
    with pytest.raises(hb.CheckpointNotFoundError, match="neither a shipped checkpoint"):
        hb.from_pretrained("no-such-model")


def test_nonstandard_rotary_frequencies(checkpoint):
    folder, _, state = checkpoint()
    state["transformer.h.0.attn.rotary.inv_freq"] = state["transformer.h.0.attn.rotary.inv_freq"] * 2
    rewrite_state(folder, state)
    with pytest.raises(hb.CheckpointWeightsError, match="standard rotary frequencies"):
        hb.from_pretrained(folder)


def test_legacy_vocab_disagreement(checkpoint):
    folder, _, _ = checkpoint("legacy")
    rewrite_config(folder, n_vocab=51)
    with pytest.raises(hb.CheckpointFormatError, match="n_vocab=51 but transformer.wte.weight has 50 rows"):
        hb.from_pretrained(folder)


def test_missing_tokenizer_warns_how_to_pass_one(checkpoint, tokens):
    folder, _, _ = checkpoint()
    with pytest.warns(UserWarning, match="Pass tokenizer="):
        bridge = hb.from_pretrained(folder)
    assert bridge(tokens, return_type="logits").shape == (2, tokens.shape[1], 50)


def test_bad_dtype_and_unknown_kwargs(checkpoint):
    folder, _, _ = checkpoint()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="dtype='float8'"):
            hb.from_pretrained(folder, dtype="float8")
        with pytest.raises(TypeError, match="unexpected keyword arguments"):
            hb.from_pretrained(folder, fold_ln=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
@pytest.mark.parametrize("load", [hb.from_pretrained, hb.load_model], ids=["from_pretrained", "load_model"])
def test_cuda_asked_for_without_cuda_says_so(load):
    with pytest.raises(ValueError, match=r"device='cuda' was asked for, but this machine has no CUDA device"):
        load("ts-synthetic-2l", device="cuda")
