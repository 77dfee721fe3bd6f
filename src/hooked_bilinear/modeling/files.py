"""The files of a checkpoint folder: config.json as a dict, the weights (.safetensors, sharded or not, or .bin) as
a state dict, and the vocabulary size the tdooms formats leave to the embedding. No validation of what they hold
(loading/checkpoint.py does that); every unreadable file raises a HookedBilinearError naming it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from hooked_bilinear.errors import CheckpointFormatError, CheckpointWeightsError

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def read_config(folder: Path) -> dict[str, Any]:
    """config.json of a checkpoint folder as a dict."""
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointFormatError(f"{folder} has no config.json; a checkpoint folder needs config.json and weights.")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointFormatError(f"{path} is not valid JSON ({error}).") from error
    if not isinstance(raw, dict):
        raise CheckpointFormatError(f"{path} must hold a JSON object, found {type(raw).__name__}.")
    return raw


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointWeightsError(
                f"{path} is corrupt or truncated ({error}). Download it again (delete it from the Hugging Face "
                f"cache, or re-save the checkpoint)."
            ) from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad pickle: report them all the same way
        raise CheckpointWeightsError(
            f"{path} could not be read as a PyTorch state dict with weights_only=True ({error}). Download it again, "
            f"or convert it to model.safetensors."
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointWeightsError(f"{path} does not hold a flat {{name: tensor}} state dict.")
    return state


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict of a folder: model.safetensors, a safetensors index with shards, or pytorch_model.bin."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return _load_file(path)
        try:
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as error:
            raise CheckpointWeightsError(f"{path} is not a valid weight index ({error}).") from error
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            if not (folder / shard).is_file():
                raise CheckpointWeightsError(f"{path} lists shard {shard}, which is missing from {folder}.")
            state.update(_load_file(folder / shard))
        return state
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise CheckpointWeightsError(f"{folder} has no weights: expected one of {list(WEIGHT_FILES)}, found {present}.")


def vocab_size_of(state: dict[str, torch.Tensor]) -> int:
    """Vocabulary size: rows of `transformer.wte.weight` (tdooms configs do not state it)."""
    wte = state.get("transformer.wte.weight")
    if wte is None or wte.ndim != 2:
        raise CheckpointWeightsError(
            "missing weight key transformer.wte.weight (the token embedding, which also gives the vocabulary size)."
        )
    return int(wte.shape[0])
