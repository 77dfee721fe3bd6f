"""SAELens's on-disk format: a folder with `cfg.json` and `sae_weights.safetensors` (W_enc, W_dec, b_enc, b_dec, and
`threshold` for JumpReLU), read and written without SAELens.

cfg.json as SAELens 6 writes it: `architecture` ("topk" | "standard" | "jumprelu"), `d_in`, `d_sae`, `dtype`,
`device`, `apply_b_dec_to_input`, `normalize_activations`, `reshape_activations`, TopK's `k`, and a `metadata` dict
(`hook_name`, `model_name`, ...). Folders from SAELens < 6 (hook_name and the rest at the top level; TopK as
`activation_fn: "topk"` with `activation_fn_kwargs: {"k": ...}`) load too. Anything this package cannot compute
exactly (another architecture, run-time activation normalisation, hook_z reshaping, a finetuning scaling factor)
is refused by name rather than approximated.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from beartype import beartype
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hooked_bilinear import atomic
from hooked_bilinear.errors import SAEError, WriteError
from hooked_bilinear.sae.base import SAE
from hooked_bilinear.sae.jumprelu import JumpReLUSAE
from hooked_bilinear.sae.relu import ReLUSAE
from hooked_bilinear.sae.topk import TopKSAE

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
ARCHITECTURES: dict[str, type[SAE]] = {"topk": TopKSAE, "standard": ReLUSAE, "jumprelu": JumpReLUSAE}
# What SAELens 6 reads into its SAEMetadata; other keys would make SAELens refuse the file, so they stay out.
METADATA_KEYS = (
    "model_name",
    "hook_name",
    "model_class_name",
    "hook_layer",
    "hook_head_index",
    "model_from_pretrained_kwargs",
    "prepend_bos",
    "exclude_special_tokens",
    "neuronpedia_id",
    "context_size",
    "seqpos_slice",
    "dataset_path",
    "sae_lens_version",
    "sae_lens_training_version",
)
FORMAT_VERSION = "6.0.0"  # the SAELens cfg.json layout written (SAELens reads versions >= 6.0 without conversion)
LEGACY_RENAMES = {
    "hook_point": "hook_name",
    "hook_point_head_index": "hook_head_index",
    "activation_fn_str": "activation_fn",
}
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "torch.float32": torch.float32,
    "torch.float64": torch.float64,
    "torch.float16": torch.float16,
    "torch.bfloat16": torch.bfloat16,
}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def cfg_dict(sae: SAE) -> dict[str, Any]:
    """The cfg.json of an SAE, SAELens 6 layout."""
    metadata = {key: sae.metadata.get(key) for key in METADATA_KEYS}
    metadata["sae_lens_version"] = metadata["sae_lens_version"] or FORMAT_VERSION
    metadata["sae_lens_training_version"] = metadata["sae_lens_training_version"] or FORMAT_VERSION
    extra = {key: value for key, value in sae.metadata.items() if key not in METADATA_KEYS}
    cfg: dict[str, Any] = {
        "architecture": sae.architecture,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": dtype_name(sae.dtype),
        "device": str(sae.device),
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **sae.architecture_cfg(),
        "metadata": metadata,
    }
    if extra:
        cfg["hooked_bilinear"] = extra  # training details; SAELens ignores unknown top-level keys
    return cfg


@beartype
def save(sae: SAE, folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write `cfg.json` and `sae_weights.safetensors` (the parameters as they are: reloads bit-identically).

    Atomically: the new folder is built in a hidden sibling (with any other files the old folder held) and exchanged
    with the old one in one step, so a reader, or a process killed mid-write, sees the old SAE or the new one, never
    weights of one with the cfg.json of the other. Writers of the same folder take turns (a lock file). A failed
    write (disk full) raises WriteError and keeps the old folder.

    Args:
        sae: the SAE to write.
        folder: the folder to write to (any other files it holds are kept).
        overwrite: replace an SAE the folder already holds (default False).

    Returns:
        The folder's path, as given.

    Raises:
        SAEError: the folder already holds an SAE (cfg.json or the weights) and `overwrite` is false.
        WriteError: the write fails with an OS error (e.g. disk full); the old folder is kept.
    """
    given, folder = Path(folder), Path(folder).absolute()
    state = {name: p.detach().cpu().contiguous() for name, p in sae.named_parameters()}
    cfg = json.dumps(cfg_dict(sae), indent=2) + "\n"
    with atomic.locked(folder):
        targets = [folder / CFG_FILENAME, folder / WEIGHTS_FILENAME]
        if not overwrite and any(t.exists() for t in targets):
            raise SAEError(f"{folder} already holds an SAE; pass overwrite=True to replace it.")
        atomic.remove_leftovers(folder)  # of a writer that was killed
        partial = atomic.temporary_folder(folder)
        try:
            if folder.is_dir():  # keep what else the folder holds
                for other in folder.iterdir():
                    if other.name not in (CFG_FILENAME, WEIGHTS_FILENAME):
                        copy = shutil.copytree if other.is_dir() else shutil.copy2
                        copy(other, partial / other.name)
            save_file(state, str(partial / WEIGHTS_FILENAME))
            (partial / CFG_FILENAME).write_text(cfg)
            atomic.replace_folder(partial, folder)
        except BaseException as error:
            shutil.rmtree(partial, ignore_errors=True)
            if not isinstance(error, WriteError) and atomic.os_error_in(error) is not None:
                raise atomic.write_error(folder, error) from error
            raise
    return given


def normalise_cfg(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """A cfg.json of any SAELens version as {architecture, d_in, d_sae, dtype, apply_b_dec_to_input, k?, metadata}."""
    cfg = {LEGACY_RENAMES.get(key, key): value for key, value in raw.items()}
    metadata = dict(cfg.get("metadata") or cfg.get("meta") or {})
    for key in METADATA_KEYS:  # SAELens < 6 kept these at the top level
        if key in cfg and metadata.get(key) is None:
            metadata[key] = cfg[key]
    architecture = cfg.get("architecture", "standard")
    if architecture == "standard" and cfg.get("activation_fn") == "topk":
        architecture = "topk"
    if architecture not in ARCHITECTURES:
        raise SAEError(
            f"{where}: architecture {architecture!r} is not supported; this package reads "
            f"{', '.join(sorted(ARCHITECTURES))} SAEs (SAELens's names)."
        )
    if architecture == "standard" and cfg.get("activation_fn", "relu") not in ("relu", None):
        raise SAEError(
            f"{where}: a standard SAE with activation_fn {cfg['activation_fn']!r} is not supported (only relu)."
        )
    for key in ("d_in", "d_sae"):
        if not isinstance(cfg.get(key), int) or isinstance(cfg.get(key), bool) or cfg[key] < 1:
            raise SAEError(f"{where}: cfg.json needs a positive integer {key!r}, got {cfg.get(key)!r}.")
    normalize = cfg.get("normalize_activations", "none")
    if normalize in (None, False):
        normalize = "none"
    # SAELens applies no run-time transform for "expected_average_only_in" either (it is folded at training time)
    if normalize not in ("none", "expected_average_only_in"):
        raise SAEError(
            f"{where}: normalize_activations={normalize!r} (a run-time input normalisation) is not supported."
        )
    if cfg.get("reshape_activations", "none") not in ("none", None):
        raise SAEError(
            f"{where}: reshape_activations={cfg['reshape_activations']!r} (attention hook_z SAEs) is not supported."
        )
    if cfg.get("finetuning_scaling_factor"):
        raise SAEError(f"{where}: finetuning_scaling_factor is set; such SAEs are not supported.")
    if cfg.get("rescale_acts_by_decoder_norm"):
        raise SAEError(f"{where}: rescale_acts_by_decoder_norm is set; TopK SAEs with it are not supported.")
    dtype = cfg.get("dtype", "float32")
    if dtype not in DTYPES:
        raise SAEError(f"{where}: dtype {dtype!r} is not a floating-point dtype name ({', '.join(DTYPES)}).")
    out: dict[str, Any] = {
        "architecture": architecture,
        "d_in": cfg["d_in"],
        "d_sae": cfg["d_sae"],
        "dtype": DTYPES[dtype],
        "apply_b_dec_to_input": bool(cfg.get("apply_b_dec_to_input", True)),
        "metadata": {**metadata, **(cfg.get("hooked_bilinear") or {})},
    }
    if architecture == "topk":
        k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
        if not isinstance(k, int) or isinstance(k, bool):
            raise SAEError(f"{where}: a TopK SAE's cfg.json needs an integer 'k', got {k!r}.")
        out["k"] = k
    return out


def build(
    cfg: dict[str, Any], state: dict[str, torch.Tensor], where: str, device: torch.device | str | None = None
) -> SAE:
    """An SAE of the normalised cfg with `state`'s tensors, each checked for name, shape and finite values."""
    cls = ARCHITECTURES[cfg["architecture"]]
    options: dict[str, Any] = {"apply_b_dec_to_input": cfg["apply_b_dec_to_input"], "metadata": cfg["metadata"]}
    if cls is TopKSAE:
        options["k"] = cfg["k"]
    try:
        sae = cls(cfg["d_in"], cfg["d_sae"], dtype=cfg["dtype"], **options)
    except SAEError as error:
        raise SAEError(f"{where}: {error}") from error
    state = dict(state)
    if cls is JumpReLUSAE and "threshold" not in state and "log_threshold" in state:
        state["threshold"] = state.pop("log_threshold").exp()
    expected = {name: tuple(p.shape) for name, p in sae.named_parameters()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise SAEError(
            f"{where}: a {cfg['architecture']} SAE's weights are {', '.join(sorted(expected))}; "
            f"missing {missing or 'none'}, unexpected {unexpected or 'none'}."
        )
    for name, shape in expected.items():
        tensor = state[name]
        if tuple(tensor.shape) != shape:
            raise SAEError(
                f"{where}: {name} has shape {tuple(tensor.shape)}, but cfg.json (d_in={cfg['d_in']}, "
                f"d_sae={cfg['d_sae']}) needs {shape}."
            )
        if not tensor.dtype.is_floating_point:
            raise SAEError(f"{where}: {name} holds {tensor.dtype} values, not floating point.")
        if not torch.isfinite(tensor).all():
            raise SAEError(f"{where}: {name} holds NaN/inf values.")
    sae.load_state_dict({name: state[name].to(cfg["dtype"]) for name in expected})
    return sae if device is None else sae.to(device)


@beartype
def load_folder(folder: str | os.PathLike, device: torch.device | str | None = None) -> SAE:
    """The SAE in an SAELens-format folder (see module doc).

    Args:
        folder: a folder holding cfg.json and sae_weights.safetensors (SAELens's format, any version).
        device: the device to put the SAE on (default: the CPU, where it is loaded).

    Returns:
        The SAE (`ReLUSAE`, `TopKSAE` or `JumpReLUSAE`, by its cfg's architecture), in the cfg's dtype.

    Raises:
        SAEError: the folder or one of its files is missing, cfg.json is not a JSON object or describes an
            unsupported SAE, or the weights are unreadable or do not match it (names, shapes, non-finite values).
    """
    folder = Path(folder)
    cfg_path, weights_path = folder / CFG_FILENAME, folder / WEIGHTS_FILENAME
    if not folder.is_dir():
        raise SAEError(f"{folder} is not a folder; an SAE is a folder holding {CFG_FILENAME} and {WEIGHTS_FILENAME}.")
    if not cfg_path.is_file() or not weights_path.is_file():
        present = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
        raise SAEError(
            f"{folder} is not an SAE folder: it needs {CFG_FILENAME} and {WEIGHTS_FILENAME} (SAELens's format), "
            f"and holds {present}."
        )
    try:
        raw = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SAEError(f"{cfg_path} is not valid JSON ({error}).") from error
    if not isinstance(raw, dict):
        raise SAEError(f"{cfg_path} must hold a JSON object, got {type(raw).__name__}.")
    cfg = normalise_cfg(raw, str(folder))
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise SAEError(f"{weights_path} is not a readable safetensors file ({error}).") from error
    return build(cfg, state, str(folder), device=device)


@beartype
def from_object(obj: Any) -> SAE:
    """This package's SAE for any object with W_enc, W_dec, b_enc, b_dec (an SAELens SAE, say): the architecture
    from `obj.cfg.architecture` (SAELens; a method there) or `obj.architecture`, TopK's k from `cfg.k` / `k`,
    JumpReLU's `threshold`, hook_name from `cfg.metadata.hook_name` / `cfg.hook_name` / `hook_name`.

    Args:
        obj: the SAE-like object; an SAE of this package is returned as it is.

    Returns:
        The SAE, on `obj.W_enc`'s device and in its dtype, with the same parameters (copied).

    Raises:
        SAEError: `obj` lacks one of the tensors W_enc, W_dec, b_enc, b_dec, or its architecture or settings are not
            supported, or the tensors' shapes do not fit.
    """
    if isinstance(obj, SAE):
        return obj
    missing = [
        name for name in ("W_enc", "W_dec", "b_enc", "b_dec") if not isinstance(getattr(obj, name, None), torch.Tensor)
    ]
    if missing:
        raise SAEError(
            f"{type(obj).__name__} is not an SAE: an SAE has tensors W_enc [d_in, d_sae], W_dec [d_sae, d_in], "
            f"b_enc [d_sae] and b_dec [d_in]; missing {', '.join(missing)}."
        )
    cfg = getattr(obj, "cfg", None)
    architecture = getattr(cfg, "architecture", None) or getattr(obj, "architecture", None)
    architecture = architecture() if callable(architecture) else (architecture or "standard")
    metadata = getattr(cfg, "metadata", None) or getattr(cfg, "meta", None)
    hook_name = (
        getattr(metadata, "hook_name", None) or getattr(cfg, "hook_name", None) or getattr(obj, "hook_name", None)
    )
    k = getattr(cfg, "k", None) or getattr(obj, "k", None)
    raw: dict[str, Any] = {
        "architecture": architecture,
        "d_in": int(obj.W_enc.shape[0]),
        "d_sae": int(obj.W_enc.shape[1]),
        "dtype": dtype_name(obj.W_enc.dtype),
        "apply_b_dec_to_input": getattr(cfg, "apply_b_dec_to_input", getattr(obj, "apply_b_dec_to_input", True)),
        "normalize_activations": getattr(cfg, "normalize_activations", "none"),
        "metadata": {"hook_name": hook_name},
    }
    if k is not None:
        raw["k"] = int(k)
    normalised = normalise_cfg(raw, type(obj).__name__)
    state = {name: getattr(obj, name).detach() for name in ("W_enc", "W_dec", "b_enc", "b_dec")}
    if normalised["architecture"] == "jumprelu":
        state["threshold"] = torch.as_tensor(obj.threshold).detach()
    return build(normalised, state, type(obj).__name__, device=obj.W_enc.device)
