"""`push_to_hub`: save_pretrained into a local folder, then upload that folder as one commit to a Hub repo.

The local copy is written first and kept whatever happens to the upload, so a network or auth failure loses nothing:
the error names the folder, and `push_folder_to_hub` retries from it. The endpoint is `endpoint=`, else `HF_ENDPOINT`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Optional, Union

from beartype import beartype
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from hooked_bilinear.errors import PublishError
from hooked_bilinear.publishing.provenance import Provenance
from hooked_bilinear.publishing.save import save_pretrained

UPLOAD_TIMEOUT_S = 3600.0


def staging_folder(repo_id: str) -> Path:
    """Default local copy of an upload: $HF_HOME/hooked_bilinear/push/<owner>--<name>."""
    return Path(constants.HF_HOME) / "hooked_bilinear" / "push" / repo_id.replace("/", "--")


def _explain(error: BaseException, endpoint: str) -> str:
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status in (401, 403):
            return (f"{endpoint} refused the credentials (HTTP {status}): pass token= with write access, or log in "
                    f"with `hf auth login`")
        return f"{endpoint} answered HTTP {status} ({error})"
    return f"{endpoint} could not be reached ({type(error).__name__}: {error})"


def _upload(api: HfApi, folder: Path, repo_id: str, overwrite: bool, private: bool, message: str) -> str:
    if api.repo_exists(repo_id) and not overwrite:
        raise PublishError(f"the Hub repo {repo_id} already exists at {api.endpoint}; pass overwrite=True to add a "
                           f"commit replacing its files, or choose another repo_id.")
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=message).commit_url


@beartype
def push_folder_to_hub(
    folder: Union[str, os.PathLike],
    repo_id: str,
    *,
    overwrite: bool = False,
    private: bool = False,
    token: Optional[str] = None,
    endpoint: Optional[str] = None,
    commit_message: str = "Upload with hooked-bilinear",
    timeout: Union[int, float] = UPLOAD_TIMEOUT_S,
) -> str:
    """Upload a saved folder to `repo_id` in one commit; returns the commit URL. PublishError on any failure."""
    folder = Path(folder)
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    if constants.HF_HUB_OFFLINE:
        raise PublishError(f"HF_HUB_OFFLINE is set, so nothing can be uploaded; the saved folder is {folder}. Unset "
                           f"it and call hooked_bilinear.publishing.hub.push_folder_to_hub({str(folder)!r}, "
                           f"{repo_id!r}).")
    api = HfApi(endpoint=endpoint, token=token)
    result: dict[str, Any] = {}

    def run() -> None:  # a daemon thread: huggingface_hub's HTTP client has no timeout of its own
        try:
            result["url"] = _upload(api, folder, repo_id, overwrite, private, commit_message)
        except BaseException as error:  # handed to the caller below
            result["error"] = error

    worker = threading.Thread(target=run, name="hooked-bilinear-push", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise PublishError(f"{endpoint} did not finish the upload within {timeout:g} s; the saved folder {folder} is "
                           f"kept. Check the repo (a late commit may still land) and retry with push_folder_to_hub.")
    error = result.get("error")
    if isinstance(error, PublishError):
        raise error
    if error is not None:  # network, HTTP and protocol errors all leave the local copy usable
        raise PublishError(f"uploading {folder} to {repo_id} failed: {_explain(error, endpoint)}. The saved folder "
                           f"is kept; retry with hooked_bilinear.publishing.hub.push_folder_to_hub.") from error
    return result["url"]


@beartype
def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    tokenizer: Any = None,
    provenance: Optional[Provenance] = None,
    local_dir: Union[str, os.PathLike, None] = None,
    overwrite: bool = False,
    private: bool = False,
    token: Optional[str] = None,
    endpoint: Optional[str] = None,
    commit_message: str = "Upload with hooked-bilinear",
    timeout: Union[int, float] = UPLOAD_TIMEOUT_S,
) -> str:
    """save_pretrained(model) into `local_dir` (default `staging_folder(repo_id)`), then upload it; returns the
    commit URL. An existing repo (or an existing `local_dir` you chose) is replaced only with `overwrite=True`."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"repo_id {repo_id!r} is not a valid Hub repo id ({error}).") from error
    if "/" not in repo_id:
        raise PublishError(f"repo_id {repo_id!r} needs an owner: 'owner/name'.")
    folder = Path(local_dir) if local_dir is not None else staging_folder(repo_id)
    save_pretrained(model, folder, tokenizer=tokenizer, provenance=provenance, name=repo_id,
                    overwrite=overwrite or local_dir is None)
    return push_folder_to_hub(folder, repo_id, overwrite=overwrite, private=private, token=token, endpoint=endpoint,
                              commit_message=commit_message, timeout=timeout)
