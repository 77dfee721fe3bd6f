"""Reading a checkpoint folder: config.json, weight files (.safetensors, sharded or not, or .bin), validation.

Every failure raises a HookedBilinearError subclass that names the file or key and what to do.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from hooked_bilinear.errors import CheckpointFormatError, CheckpointWeightsError
from hooked_bilinear.modeling.configuration import MODEL_TYPE, BilinearConfig, config_from_dict
from hooked_bilinear.modeling.modeling import BilinearForCausalLM, rotary_inv_freq

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


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
    raise CheckpointWeightsError(
        f"{folder} has no weights: expected one of {list(WEIGHT_FILES)}, found {present}."
    )


def vocab_size_of(state: dict[str, torch.Tensor]) -> int:
    """Vocabulary size: rows of `transformer.wte.weight` (tdooms configs do not state it)."""
    wte = state.get("transformer.wte.weight")
    if wte is None or wte.ndim != 2:
        raise CheckpointWeightsError(
            "missing weight key transformer.wte.weight (the token embedding, which also gives the vocabulary size)."
        )
    return int(wte.shape[0])


def build_config(
    raw: dict[str, Any], state: dict[str, torch.Tensor], checkpoint_format: Optional[Literal["current", "legacy"]]
) -> BilinearConfig:
    """BilinearConfig for a config.json dict: this package's own saved config, or a tdooms dump."""
    if raw.get("model_type") == MODEL_TYPE and checkpoint_format is None:
        fields = {k: v for k, v in raw.items() if k not in ("model_type", "architectures", "transformers_version")}
        return BilinearConfig(**fields)
    return config_from_dict(raw, vocab_size_of(state), checkpoint_format)


def check_state_dict(model: BilinearForCausalLM, state: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointWeightsError listing missing/unexpected keys and shape mismatches, if any."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing weight keys {missing}")
    if unexpected:
        problems.append(f"unexpected weight keys {unexpected}")
        if any(".attn." in key and key.endswith(".bias") for key in unexpected):
            problems.append("attention biases are not part of the tdooms formats (`bias` applies to the MLP's w and p "
                            "only; docs/formats.md), so this checkpoint was not made by the authors' code")
    for key in sorted(set(expected) & set(state)):
        if tuple(state[key].shape) != tuple(expected[key].shape):
            problems.append(
                f"shape mismatch for {key}: config implies {tuple(expected[key].shape)}, "
                f"checkpoint has {tuple(state[key].shape)}"
            )
    if problems:
        c = model.config
        raise CheckpointWeightsError(
            "The weights do not fit config.json ("
            f"{c.checkpoint_format} format, bilinear={c.bilinear}, gate={c.gate}, bias={c.bias}, "
            f"normalization={c.normalization}): " + "; ".join(problems) + ". Check that config.json belongs to these "
            "weights, or force the other format with checkpoint_format='current' / 'legacy'."
        )
    for key, value in state.items():
        if key.endswith("rotary.inv_freq"):
            expected_freq = rotary_inv_freq(model.config.d_head, model.config.rope_theta)
            if not torch.allclose(value.float(), expected_freq, rtol=1e-5, atol=0.0):
                raise CheckpointWeightsError(
                    f"{key} differs from the standard rotary frequencies 1/10000^(2i/d_head); this model class "
                    f"computes rotary embeddings from the formula and would silently disagree with the checkpoint."
                )


def check_finite_weights(state: dict[str, torch.Tensor], folder: Path, allow_non_finite: bool) -> None:
    """Refuse NaN / inf weights, naming the first tensor that holds them (or warn when `allow_non_finite`)."""
    bad = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if not bad:
        return
    message = (f"{folder}: {len(bad)} weight tensor(s) hold NaN or inf values, first {bad[0]!r}; every logit "
               f"computed from them would be meaningless.")
    if not allow_non_finite:
        raise CheckpointWeightsError(message + " Re-download or re-save the checkpoint; pass allow_non_finite=True "
                                               "to load it anyway (for debugging).")
    warnings.warn(message + " Loaded anyway because allow_non_finite=True.", stacklevel=3)


def check_float_weights(state: dict[str, torch.Tensor], folder: Path) -> None:
    """Refuse integer or boolean tensors where the model holds floating-point weights."""
    bad = sorted(key for key, value in state.items() if not value.is_floating_point())
    if bad:
        raise CheckpointWeightsError(
            f"{folder}: weight tensor(s) {bad[:3]} have a non-floating-point dtype "
            f"({state[bad[0]].dtype}); a checkpoint stores float32 / float16 / bfloat16 weights. Re-save it."
        )


def read_checkpoint(
    folder: Path,
    raw: dict[str, Any],
    checkpoint_format: Optional[Literal["current", "legacy"]] = None,
    allow_non_finite: bool = False,
) -> BilinearForCausalLM:
    """A BilinearForCausalLM (float32, CPU, eval mode) from a folder's config.json dict and weights, checked key by
    key (names, shapes, dtypes, finiteness)."""
    state = read_weights(folder)
    config = build_config(raw, state, checkpoint_format)
    model = BilinearForCausalLM(config)
    check_state_dict(model, state)
    check_float_weights(state, folder)
    check_finite_weights(state, folder, allow_non_finite)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()
