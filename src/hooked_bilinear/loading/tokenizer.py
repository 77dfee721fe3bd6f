"""Finding a checkpoint's tokenizer: its own folder, else the Hub tokenizer its config names, else none (warned)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from hooked_bilinear.errors import CheckpointNotFoundError
from hooked_bilinear.loading.hub import hub_snapshot
from hooked_bilinear.modeling.configuration import TOKENIZER_REPOS

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
# Pad token per tokenizer family (docs/formats.md section 1); WordPiece TinyStories tokenizers pad with [EOS].
_PAD = {"mistral": "</s>", "gpt2": None}


def tokenizer_repo(config: PretrainedConfig) -> str | None:
    """Hub repo of the tokenizer a config names (docs/formats.md sections 1-3), or None."""
    name = getattr(config, "tokenizer", None)  # tdooms configs name one; Llama configs do not
    if not name:
        return None
    return TOKENIZER_REPOS.get(name, name if "/" in name else None)


def _with_pad(tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token is None:
        pad = _PAD.get(getattr(config, "tokenizer", None) or "", "[EOS]")
        if pad is not None and pad in tokenizer.get_vocab():
            tokenizer.pad_token = pad
        elif tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_folder_tokenizer(folder: Path) -> PreTrainedTokenizerBase | None:
    """The tokenizer saved in a checkpoint folder, or None if it holds none."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder))
    return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))


def resolve_tokenizer(tokenizer: Any, folder: Path, config: PretrainedConfig) -> PreTrainedTokenizerBase | None:
    """The user's tokenizer (object or name), the folder's, the config's Hub tokenizer, or None with a warning."""
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        return tokenizer
    if tokenizer is not None:
        path = Path(tokenizer)
        found = load_folder_tokenizer(path if path.is_dir() else hub_snapshot(str(tokenizer)))
        if found is None:
            raise CheckpointNotFoundError(f"tokenizer={str(tokenizer)!r} holds no tokenizer files ({TOKENIZER_FILES}).")
        return _with_pad(found, config)
    found, reason = find_tokenizer(folder, config)
    if found is not None:
        return found
    warnings.warn(
        f"No tokenizer for the checkpoint in {folder}: {reason}. The model loads without one (tokens in, logits "
        f"out); to_tokens, to_string and generate on text need one. Pass tokenizer=<a tokenizer or its Hub id / "
        f"folder> to hooked_bilinear.from_pretrained.",
        stacklevel=3,
    )
    return None


def find_tokenizer(folder: Path, config: PretrainedConfig) -> tuple[PreTrainedTokenizerBase | None, str]:
    """The checkpoint folder's tokenizer, else the Hub tokenizer its config names; (None, why) when neither."""
    found = load_folder_tokenizer(folder)
    if found is not None:
        return _with_pad(found, config), ""
    repo = tokenizer_repo(config)
    reason = "its config names no tokenizer"
    if repo is not None:
        try:
            found = load_folder_tokenizer(hub_snapshot(repo))
        except CheckpointNotFoundError as error:
            reason = f"its tokenizer {repo} could not be loaded ({error})"
        else:
            if found is not None:
                return _with_pad(found, config), ""
            reason = f"its tokenizer repo {repo} holds no tokenizer files"
    return None, reason
