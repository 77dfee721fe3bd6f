"""`save_pretrained`: a Hub-ready folder (config.json, model.safetensors, tokenizer files, README.md), written
atomically: everything goes to a hidden sibling folder first and is renamed into place only once complete and verified.

It publishes what the user holds: a bridge, a transformers model, or a checkpoint by name. tdooms-format models are
written in their stock LlamaForCausalLM form (`to_llama`) when they have one, so stock transformers loads them.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from beartype import beartype
from transformers import PreTrainedModel

from hooked_bilinear import atomic
from hooked_bilinear.errors import PublishError, WriteError, option
from hooked_bilinear.loading.hub import hub_snapshot
from hooked_bilinear.loading.tokenizer import TOKENIZER_FILES, load_folder_tokenizer
from hooked_bilinear.modeling.files import read_weights
from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.publishing.model_card import model_card
from hooked_bilinear.publishing.provenance import Provenance, attach, provenance_of
from hooked_bilinear.publishing.source import resolve_source
from hooked_bilinear.publishing.to_llama import convert, representable

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


def _exists(folder: Path) -> PublishError:
    return PublishError(
        f"{folder} already exists; pass {option('overwrite')} to replace it (the old folder is "
        f"kept until the new one is complete), or choose another folder."
    )


def publishable(
    model: Any,
    tokenizer: Any,
    as_llama: bool | None,
    processed_weights: bool,
    token_ids_only: bool,
) -> tuple[PreTrainedModel, Any]:
    """The transformers model to write (tdooms -> its Llama form when it has one) and the tokenizer to write with it:
    `tokenizer`, else the one the model was loaded with (the bridge's, the folder's, what to_llama recorded)."""
    source = resolve_source(model, "save_pretrained", processed_weights)
    out = source.model
    if isinstance(out, BilinearForCausalLM) and as_llama is not False:
        reasons = representable(out.config)
        if not reasons or as_llama:  # as_llama=True on an unrepresentable model: convert() raises, saying why
            out = convert(source)
        else:
            warnings.warn(
                f"{source.name} has no stock LlamaForCausalLM form ({'; '.join(reasons)}), so it is published in "
                f"this package's class BilinearForCausalLM (model_type tdooms_bilinear), which loads once "
                f"hooked_bilinear is imported. Pass {option('as_llama', False)} to ask for this form.",
                stacklevel=4,  # past save_pretrained and its beartype wrapper
            )
    elif out is not model and provenance_of(out) is None:  # a bridge's copy, or a checkpoint loaded by name
        attach(
            out,
            Provenance(
                source=("TransformerLens-processed weights (fold_ln, centering) of " if source.processed else "")
                + source.name,
                conversion="none: the checkpoint's own weights"
                + (
                    ", copied out of its TransformerBridge (max |logit difference| against the bridge below)"
                    if source.bridge_difference is not None
                    else ""
                ),
                max_abs_logit_diff=source.bridge_difference,
                compared="the saved model against the TransformerBridge it was copied out of (a check of the copy)",
            ),
        )
    if isinstance(tokenizer, (str, os.PathLike)):
        path = Path(tokenizer)
        tokenizer = load_folder_tokenizer(path if path.is_dir() else hub_snapshot(str(tokenizer)))
        if tokenizer is None:
            raise PublishError(
                f"{option('tokenizer', str(path))}: holds no tokenizer files ({', '.join(TOKENIZER_FILES)})."
            )
    chosen = tokenizer if tokenizer is not None else source.tokenizer
    if chosen is None and not token_ids_only:
        warnings.warn(
            f"No tokenizer is known for {source.name}, so none is written: the published folder will take token ids "
            f"only, and TransformerLens / pipelines on text will fail on it. Pass {option('tokenizer', '...')} "
            f"(a tokenizer object, or a folder or Hub id holding one).",
            stacklevel=4,  # past save_pretrained and its beartype wrapper
        )
    return out, chosen


@beartype
def save_pretrained(
    model: Any,
    folder: str | os.PathLike,
    *,
    tokenizer: Any = None,
    overwrite: bool = False,
    provenance: Provenance | None = None,
    name: str | None = None,
    max_shard_size: int | str = MAX_SHARD_SIZE,
    as_llama: bool | None = None,
    processed_weights: bool = False,
    token_ids_only: bool = False,
) -> Path:
    """Write a model as a folder the Hub and stock transformers load.

    Args:
        model: a TransformerBridge from `hooked_bilinear.from_pretrained` (its checkpoint's weights), a transformers
            model (e.g. from `to_llama` or `bilinearize`), or a folder / shipped name / Hub id.
        tokenizer: the tokenizer to write (an object, or a folder / Hub id holding one); default the one the model
            was loaded with (the bridge's, the checkpoint folder's, the one `to_llama` recorded). When none is
            known, a warning says so.
        as_llama: for a tdooms-format model: None (default) writes the stock LlamaForCausalLM form when it has one
            (verified on probe tokens) and otherwise this package's class, with a warning; True insists on the
            Llama form (ConversionError when there is none); False keeps this package's class.
        processed_weights: publish the weights of a bridge after TransformerLens's weight processing
            (`enable_compatibility_mode()`); without it such a bridge is refused, since its weights are not the
            checkpoint's.
        token_ids_only: the model has no tokenizer (token ids in): write none, without the warning.

    Writes config.json, generation_config.json, model.safetensors (sharded with an index past `max_shard_size`),
    the tokenizer's files, and a model card README.md (Hub YAML metadata, source, conversion, the verification's
    measured max logit difference: from `provenance`, else what `to_llama` / `bilinearize` recorded on the model).
    Every tensor is read back and compared bit for bit before the folder appears. An existing folder is replaced
    only with `overwrite=True`, and only once the new one is complete.

    Returns:
        The folder written.

    Raises:
        ConversionError: a processed bridge without `processed_weights=True`; `as_llama=True` for a model without a
            Llama form.
        PublishError: the folder exists and `overwrite` is false; it cannot be written; a given tokenizer folder
            holds no tokenizer files; the written tensors do not read back equal.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import hooked_bilinear as hb
        >>> folder = Path(tempfile.mkdtemp()) / "ts-llama"
        >>> saved = hb.save_pretrained(hb.from_pretrained("ts-synthetic-2l"), folder)
        >>> sorted(path.name for path in saved.iterdir())  # doctest: +NORMALIZE_WHITESPACE
        ['README.md', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json',
         'tokenizer_config.json']
        >>> hb.load_model(saved).config.hidden_act  # a stock LlamaForCausalLM folder
        'linear'
    """
    folder = Path(folder).absolute()
    if folder.exists() and not overwrite:
        raise _exists(folder)
    model, tokenizer = publishable(model, tokenizer, as_llama, processed_weights, token_ids_only)
    try:
        with atomic.locked(folder):  # a concurrent save to the same folder waits, then replaces this one whole
            if folder.exists() and not overwrite:
                raise _exists(folder)
            atomic.remove_leftovers(folder)  # of a writer that was killed
            partial = atomic.temporary_folder(folder)
            try:
                model.save_pretrained(partial, max_shard_size=max_shard_size)
                if tokenizer is not None:
                    tokenizer.save_pretrained(partial)
                card = model_card(model, name or folder.name, provenance or provenance_of(model))
                (partial / "README.md").write_text(card)
                check_saved_tensors(model, partial)
                atomic.replace_folder(partial, folder)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
    except Exception as error:
        if isinstance(error, PublishError) or atomic.os_error_in(error) is None:
            raise
        raise PublishError(
            str(error if isinstance(error, WriteError) else atomic.write_error(folder, error))
        ) from error
    return folder
