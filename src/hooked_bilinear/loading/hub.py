"""Hub repositories as local folders, through the huggingface_hub cache (honours HF_HUB_OFFLINE and revisions)."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

from hooked_bilinear.errors import CheckpointNotFoundError

PATTERNS = ["*.json", "*.safetensors", "*.bin", "*.txt", "*.model"]


def hub_snapshot(repo_id: str, revision: str | None = None, patterns: list[str] | None = None) -> Path:
    """Local folder of `repo_id` at `revision` with the files matching `patterns` (default: config, weights and
    tokenizer files)."""
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns or PATTERNS))
    except LocalEntryNotFoundError as error:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub could not be reached"
        raise CheckpointNotFoundError(
            f"{repo_id!r} (revision {revision or 'main'}) is not in the Hugging Face cache and {why}. Download it "
            f"once online (hf download {repo_id}), or pass a local folder."
        ) from error
    except RepositoryNotFoundError as error:
        raise CheckpointNotFoundError(f"Hub repository {repo_id!r} does not exist or is private ({error}).") from error
    except HfHubHTTPError as error:
        raise CheckpointNotFoundError(f"Downloading {repo_id!r} from the Hub failed: {error}") from error
