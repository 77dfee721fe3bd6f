"""Where SAEs come from: the ones shipped inside the package, local folders, and Hub repositories."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from beartype import beartype

from hooked_bilinear.errors import CheckpointNotFoundError, SAEError
from hooked_bilinear.loading.hub import hub_snapshot
from hooked_bilinear.loading.shipped import loader_hint
from hooked_bilinear.sae.base import SAE
from hooked_bilinear.sae.format import (
    CFG_FILENAME,
    WEIGHTS_FILENAME,
    from_object,
    load_folder,
)

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "saes"


@beartype
def shipped() -> list[str]:
    """Names of the SAEs shipped inside the package, `<model>/<hook_name>` (e.g. "ts-synthetic-2l/blocks.0.mlp.hook_in").

    Returns:
        The names, sorted; `load(name)` loads each.
    """
    if not SHIPPED.is_dir():
        return []
    return sorted(str(p.parent.relative_to(SHIPPED)) for p in SHIPPED.glob(f"*/*/{CFG_FILENAME}"))


def hub_folder(hub_id: str, revision: str | None) -> Path:
    """`owner/name` or `owner/name/sub/folder` on the Hub -> the local folder of its cfg.json + weights."""
    parts = hub_id.strip("/").split("/")
    repo_id, sub = "/".join(parts[:2]), "/".join(parts[2:])
    prefix = f"{sub}/" if sub else ""
    try:
        root = hub_snapshot(repo_id, revision, [prefix + CFG_FILENAME, prefix + WEIGHTS_FILENAME])
    except CheckpointNotFoundError as error:
        raise SAEError(
            f"SAE {hub_id!r} is not a shipped SAE ({', '.join(shipped()) or 'none'}), nor a local folder; as a Hub "
            f"id: {error}"
        ) from error
    return root / sub


@beartype
def load(
    path_or_hub_id: str | os.PathLike | Any, *, device: torch.device | str | None = None, revision: str | None = None
) -> SAE:
    """An SAE from a shipped name (`shipped()`), a local SAELens-format folder, a Hub id (`owner/name`, or
    `owner/name/<folder in the repo>`, through huggingface_hub's cache), or an object with W_enc/W_dec/b_enc/b_dec
    (an SAELens SAE: converted).

    Args:
        path_or_hub_id: a shipped name, a folder (cfg.json + sae_weights.safetensors), a Hub id, or an SAE object.
        device: where to put the weights (default: as stored, CPU).
        revision: Hub revision (branch, tag or commit), for a Hub id.

    Returns:
        The SAE (`TopKSAE`, `ReLUSAE` or `JumpReLUSAE`), with `hook_name` and `metadata` from its cfg.json.

    Raises:
        SAEError: neither a shipped name, a folder nor a Hub id; the folder is not an SAE; its architecture or
            cfg.json is unsupported; its weights are missing, misshapen or not finite.
        CheckpointNotFoundError: a Hub id that cannot be fetched.
    """
    if not isinstance(path_or_hub_id, (str, os.PathLike)):
        return from_object(path_or_hub_id).to(device) if device is not None else from_object(path_or_hub_id)
    text = str(path_or_hub_id)
    path = Path(path_or_hub_id)
    hint = loader_hint(text, "SAE")
    if hint:
        raise SAEError(f"{hint}Shipped SAEs: {', '.join(shipped())}.")
    if text in shipped():
        return load_folder(SHIPPED / text, device=device)
    if path.exists():
        return load_folder(path, device=device)
    if isinstance(path_or_hub_id, str) and text.count("/") >= 1 and not text.startswith((".", "/", "~")):
        return load_folder(hub_folder(text, revision), device=device)
    raise SAEError(
        f"{text!r} is neither a shipped SAE ({', '.join(shipped()) or 'none'}), an existing folder, nor a Hub id "
        "(owner/name[/folder])."
    )
