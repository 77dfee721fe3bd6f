"""A checkpoint folder as a checked BilinearForCausalLM: the config and weights (read by modeling/files.py) validated.

Every failure raises a HookedBilinearError subclass that names the file or key and what to do.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch

from hooked_bilinear.errors import CheckpointWeightsError
from hooked_bilinear.modeling.configuration import MODEL_TYPE, BilinearConfig, config_from_dict
from hooked_bilinear.modeling.files import read_weights, vocab_size_of
from hooked_bilinear.modeling.modeling import BilinearForCausalLM, rotary_inv_freq


def build_config(
    raw: dict[str, Any], state: dict[str, torch.Tensor], checkpoint_format: Literal["current", "legacy"] | None
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
            problems.append(
                "attention biases are not part of the tdooms formats (`bias` applies to the MLP's w and p "
                "only; docs/formats.md), so this checkpoint was not made by the authors' code"
            )
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
    message = (
        f"{folder}: {len(bad)} weight tensor(s) hold NaN or inf values, first {bad[0]!r}; every logit "
        f"computed from them would be meaningless."
    )
    if not allow_non_finite:
        raise CheckpointWeightsError(
            message + " Re-download or re-save the checkpoint; pass allow_non_finite=True "
            "to load it anyway (for debugging)."
        )
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
    checkpoint_format: Literal["current", "legacy"] | None = None,
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
