"""`save_pretrained`: a Hub-ready folder (config.json, model.safetensors, tokenizer files, README.md), written
atomically: everything goes to a hidden sibling folder first and is renamed into place only once complete and verified.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import torch
from beartype import beartype
from transformers import PreTrainedModel

from hooked_bilinear.errors import PublishError
from hooked_bilinear.modeling.files import read_weights
from hooked_bilinear.publishing.model_card import model_card
from hooked_bilinear.publishing.provenance import Provenance, provenance_of

MAX_SHARD_SIZE = "5GB"


def check_saved_tensors(model: PreTrainedModel, folder: Path) -> None:
    """Every tensor in the folder's safetensors files is bit-identical to the model's; none is missing."""
    saved = read_weights(folder)
    state = model.state_dict()
    tied = {key for key in state if key not in saved and getattr(model.config, "tie_word_embeddings", False)}
    missing = sorted(set(state) - set(saved) - tied)
    if missing:
        raise PublishError(f"the written folder lacks tensors {missing[:5]}{'...' if len(missing) > 5 else ''}.")
    for key, tensor in saved.items():
        if key not in state or not torch.equal(tensor, state[key].detach().cpu()):
            raise PublishError(f"tensor {key} read back from the written folder differs from the model's.")


def _replace(partial: Path, folder: Path) -> None:
    """Rename the complete `partial` folder to `folder`; an existing `folder` is kept until the rename succeeded."""
    if not folder.exists():
        os.rename(partial, folder)
        return
    backup = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
    os.rename(folder, backup / folder.name)
    try:
        os.rename(partial, folder)
    except OSError:
        os.rename(backup / folder.name, folder)
        raise
    shutil.rmtree(backup)


@beartype
def save_pretrained(
    model: Any,
    folder: Union[str, os.PathLike],
    *,
    tokenizer: Any = None,
    overwrite: bool = False,
    provenance: Optional[Provenance] = None,
    name: Optional[str] = None,
    max_shard_size: Union[int, str] = MAX_SHARD_SIZE,
) -> Path:
    """Write `model` (e.g. from `to_llama` or `bilinearize`) as a folder the Hub and stock transformers load.

    Writes config.json, generation_config.json, model.safetensors (sharded with an index past `max_shard_size`),
    the tokenizer's files, and a model card README.md (Hub YAML metadata, source, conversion, the verification's
    measured max logit difference: from `provenance`, else what `to_llama` / `bilinearize` recorded on the model).
    Every tensor is read back and compared bit for bit before the folder appears. An existing folder is replaced
    only with `overwrite=True`, and only once the new one is complete. Returns the folder.
    """
    if not isinstance(model, PreTrainedModel):
        raise PublishError(
            f"save_pretrained takes a transformers PreTrainedModel (e.g. what to_llama or bilinearize return), not "
            f"{type(model).__name__}. A TransformerBridge wraps and rewires its model: save the transformers model "
            f"before building the bridge."
        )
    folder = Path(folder).absolute()
    if folder.exists() and not overwrite:
        raise PublishError(f"{folder} already exists; pass overwrite=True to replace it (the old folder is kept "
                           f"until the new one is complete), or choose another folder.")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.partial-"))
    except OSError as error:
        raise PublishError(f"cannot write to {folder.parent} ({error}); choose a writable folder.") from error
    try:
        model.save_pretrained(partial, max_shard_size=max_shard_size)
        if tokenizer is not None:
            tokenizer.save_pretrained(partial)
        card = model_card(model, name or folder.name, provenance or provenance_of(model))
        (partial / "README.md").write_text(card)
        check_saved_tensors(model, partial)
        _replace(partial, folder)
    except BaseException as error:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(error, OSError):
            raise PublishError(f"writing {folder} failed ({error}); nothing was left behind.") from error
        raise
    return folder
