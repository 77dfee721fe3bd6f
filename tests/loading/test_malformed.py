"""A seeded corpus of malformed checkpoints: every case is a clear error or an exact load, none loads silently wrong.

Mutations: config values of the wrong type or range, dropped keys, flipped bytes in the safetensors header, NaN /
inf / integer tensors, and a pickle that runs code when unpickled without `weights_only`.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import hooked_bilinear as hb
from tests.reference import make_config, reference_logits, write_checkpoint

TOKENS = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(3))
WRONG_VALUES: list[Any] = [{}, [], "yes", 1, 0, -3, 2.5, None, "", float("nan")]
CONFIG_KEYS = [
    "n_layer",
    "n_head",
    "d_model",
    "d_hidden",
    "n_ctx",
    "bilinear",
    "gate",
    "bias",
    "normalization",
    "tokenizer",
]


def config_mutation(key: str, value: Any) -> Callable[[Path, dict[str, torch.Tensor]], None]:
    def mutate(folder: Path, state: dict[str, torch.Tensor]) -> None:
        config = json.loads((folder / "config.json").read_text())
        config[key] = value
        (folder / "config.json").write_text(json.dumps(config))

    return mutate


def drop_key(key: str) -> Callable[[Path, dict[str, torch.Tensor]], None]:
    def mutate(folder: Path, state: dict[str, torch.Tensor]) -> None:
        config = json.loads((folder / "config.json").read_text())
        del config[key]
        (folder / "config.json").write_text(json.dumps(config))

    return mutate


def flip_header_byte(seed: int) -> Callable[[Path, dict[str, torch.Tensor]], None]:
    def mutate(folder: Path, state: dict[str, torch.Tensor]) -> None:
        path = folder / "model.safetensors"
        data = bytearray(path.read_bytes())
        header_length = int.from_bytes(data[:8], "little")
        position = random.Random(seed).randrange(8, 8 + header_length)
        data[position] ^= 0x5A
        path.write_bytes(bytes(data))

    return mutate


def tensor_mutation(kind: str) -> Callable[[Path, dict[str, torch.Tensor]], None]:
    def mutate(folder: Path, state: dict[str, torch.Tensor]) -> None:
        changed = dict(state)
        key = "transformer.h.1.mlp.w.weight"
        if kind == "nan":
            changed[key] = changed[key].clone()
            changed[key][3, 4] = float("nan")
        elif kind == "inf":
            changed[key] = changed[key].clone()
            changed[key][0, 0] = float("inf")
        elif kind == "int":
            changed[key] = changed[key].round().to(torch.int32)
        elif kind == "float64":
            changed[key] = changed[key].double()
        save_file(changed, str(folder / "model.safetensors"))

    return mutate


class RunsCode:
    """Unpickling this calls os.system: a weights_only load must refuse it."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned > /dev/null",))


def code_pickle(folder: Path, state: dict[str, torch.Tensor]) -> None:
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"transformer.wte.weight": RunsCode()}, handle)


def corpus() -> list[tuple[str, Callable[[Path, dict[str, torch.Tensor]], None]]]:
    rng = random.Random(0)
    cases = [
        (f"{key}={value!r}", config_mutation(key, value))
        for key in CONFIG_KEYS
        for value in rng.sample(WRONG_VALUES, 4)
    ]
    cases += [(f"drop-{key}", drop_key(key)) for key in ("n_layer", "d_model", "bilinear", "gate", "bias")]
    cases += [(f"header-byte-{seed}", flip_header_byte(seed)) for seed in range(6)]
    cases += [(f"tensor-{kind}", tensor_mutation(kind)) for kind in ("nan", "inf", "int", "float64")]
    cases += [("pickle-with-code", code_pickle)]
    return cases


@pytest.mark.parametrize("name,mutate", corpus(), ids=[name for name, _ in corpus()])
def test_malformed_checkpoint_is_a_clear_error_or_an_exact_load(tmp_path, name, mutate):
    config = make_config("current", bias=True)
    folder = tmp_path / "ckpt"
    state = write_checkpoint(folder, config, vocab=50)
    mutate(folder, state)
    try:
        model = hb.load_model(folder)
    except hb.HookedBilinearError as error:
        assert len(str(error)) > 30, f"{name}: the error should say what is wrong and what to do: {error}"
        return
    # It loaded: then the mutation must have been harmless (e.g. a float64 tensor of the same values, or a value
    # equal to the original): the logits are those of the original checkpoint, exactly.
    expected = reference_logits(state, config, TOKENS)
    with torch.no_grad():
        logits = model(TOKENS).logits
    assert (logits - expected).abs().max().item() <= 1e-5, f"{name} loaded silently wrong"


def test_non_finite_weights_load_only_when_asked(tmp_path):
    folder = tmp_path / "ckpt"
    state = write_checkpoint(folder, make_config("current"), vocab=50)
    tensor_mutation("nan")(folder, state)
    with pytest.raises(hb.CheckpointWeightsError, match=r"NaN or inf values, first 'transformer.h.1.mlp.w.weight'"):
        hb.from_pretrained(folder)
    with pytest.warns(UserWarning, match="allow_non_finite=True"):
        model = hb.load_model(folder, allow_non_finite=True)
    assert torch.isnan(model.transformer.h[1].mlp.w.weight).any()


def test_attention_bias_is_named_as_not_the_authors_format(tmp_path):
    folder = tmp_path / "ckpt"
    state = write_checkpoint(folder, make_config("current", bias=True), vocab=50)
    state["transformer.h.0.attn.qkv.bias"] = torch.zeros(96)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(hb.CheckpointWeightsError, match="attention biases are not part of the tdooms formats"):
        hb.load_model(folder)


@pytest.mark.parametrize("key,value", [("normalization", {}), ("bilinear", 1), ("bias", "false"), ("n_layer", 2.0)])
def test_config_values_are_type_checked(tmp_path, key, value):
    folder = tmp_path / "ckpt"
    state = write_checkpoint(folder, make_config("current"), vocab=50)
    config_mutation(key, value)(folder, state)
    with pytest.raises(hb.CheckpointFormatError, match=rf"{key}={value!r} must be"):
        hb.load_model(folder)
