"""`push_to_hub`: save_pretrained into a local folder, then upload that folder as one commit to a Hub repo.

The local copy is written first and kept whatever happens to the upload, so a network or auth failure loses nothing:
the error names the folder, and `push_folder_to_hub` retries from it. The endpoint is `endpoint=`, else `HF_ENDPOINT`.
"""

from __future__ import annotations

import contextvars
import os
import threading
from pathlib import Path
from typing import Any

from beartype import beartype
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from hooked_bilinear.errors import HookedBilinearError, PublishError, option, said
from hooked_bilinear.loading.pretrained import load_model
from hooked_bilinear.modeling.files import WEIGHT_FILES
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
            return (
                f"{endpoint} refused the credentials (HTTP {status}): pass {option('token', '<token>')} with "
                f"write access, or log in with `hf auth login`"
            )
        return f"{endpoint} answered HTTP {status} ({error})"
    return f"{endpoint} could not be reached ({type(error).__name__}: {error})"


def _upload(api: HfApi, folder: Path, repo_id: str, overwrite: bool, private: bool, message: str) -> str:
    if api.repo_exists(repo_id) and not overwrite:
        raise PublishError(
            f"the Hub repo {repo_id} already exists at {api.endpoint}; pass {option('overwrite')} to "
            f"add a commit replacing its files, or choose another repo id."
        )
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=message).commit_url


def _retry(folder: Path, repo_id: str) -> str:
    return said(
        f"hooked_bilinear.publishing.hub.push_folder_to_hub({str(folder)!r}, {repo_id!r})",
        f"hooked-bilinear push {folder} {repo_id}",
    )


def check_repo_id(repo_id: str) -> None:
    """PublishError unless `repo_id` is a valid Hub id with an owner ('owner/name')."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"repo id {repo_id!r} is not a valid Hub repo id ({error}).") from error
    if "/" not in repo_id:
        raise PublishError(f"repo id {repo_id!r} needs an owner: 'owner/name' (your user name or an organization).")


def check_folder(folder: Path) -> None:
    """PublishError unless `folder` is a model folder that loads: it exists, holds config.json and weights, and
    hooked_bilinear.load_model reads it (every weight checked)."""
    write = said("hooked_bilinear.save_pretrained(model, folder)", "hooked-bilinear save SOURCE FOLDER")
    if not folder.exists():
        raise PublishError(f"{folder} does not exist; write the model folder first ({write}).")
    if not folder.is_dir():
        raise PublishError(f"{folder} is a file, not a model folder; write one with {write}.")
    if not (folder / "config.json").is_file() or not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise PublishError(
            f"{folder} holds no model (config.json and one of {', '.join(WEIGHT_FILES)}); write one with {write}."
        )
    try:
        load_model(folder)
    except (HookedBilinearError, OSError, ValueError) as error:
        raise PublishError(
            f"{folder} does not load ({error}); nothing was uploaded. Fix the folder or write it again with {write}."
        ) from error


@beartype
def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    overwrite: bool = False,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str = "Upload with hooked-bilinear",
    timeout: int | float = UPLOAD_TIMEOUT_S,
) -> str:
    """Upload a saved folder to `repo_id` in one commit; returns the commit URL. PublishError on any failure.

    Everything local is checked before anything remote happens: the repo id has an owner, the folder exists, holds
    config.json and weights, and loads."""
    folder = Path(folder)
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    check_repo_id(repo_id)
    check_folder(folder)
    if constants.HF_HUB_OFFLINE:
        raise PublishError(
            f"HF_HUB_OFFLINE is set, so nothing can be uploaded; the saved folder is {folder}. Unset "
            f"it and run {_retry(folder, repo_id)}."
        )
    api = HfApi(endpoint=endpoint, token=token)
    result: dict[str, Any] = {}

    def run() -> None:  # a daemon thread: huggingface_hub's HTTP client has no timeout of its own
        try:
            result["url"] = _upload(api, folder, repo_id, overwrite, private, commit_message)
        except BaseException as error:  # handed to the caller below
            result["error"] = error

    context = contextvars.copy_context()  # error messages keep the caller's speech (keyword arguments or flags)
    worker = threading.Thread(target=context.run, args=(run,), name="hooked-bilinear-push", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise PublishError(
            f"{endpoint} did not finish the upload within {timeout:g} s; the saved folder {folder} is "
            f"kept. Check the repo (a late commit may still land) and retry with "
            f"{_retry(folder, repo_id)}."
        )
    error = result.get("error")
    if isinstance(error, PublishError):
        raise error
    if error is not None:  # network, HTTP and protocol errors all leave the local copy usable
        raise PublishError(
            f"uploading {folder} to {repo_id} failed: {_explain(error, endpoint)}. The saved folder "
            f"is kept; retry with {_retry(folder, repo_id)}."
        ) from error
    return result["url"]


@beartype
def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    tokenizer: Any = None,
    provenance: Provenance | None = None,
    local_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str = "Upload with hooked-bilinear",
    timeout: int | float = UPLOAD_TIMEOUT_S,
    as_llama: bool | None = None,
    processed_weights: bool = False,
    token_ids_only: bool = False,
) -> str:
    """save_pretrained(model) into `local_dir` (default `staging_folder(repo_id)`), then upload it; returns the
    commit URL. `model` is anything save_pretrained takes (a bridge, a transformers model, a folder / shipped name /
    Hub id), and so are `tokenizer`, `as_llama`, `processed_weights` and `token_ids_only`. Nothing remote happens
    before the folder is written and checked. An existing repo (or an existing `local_dir` you chose) is replaced
    only with `overwrite=True`.

    Args:
        model: a bridge from `from_pretrained`, a transformers model, or a folder / shipped name / Hub id.
        repo_id: the Hub repo, `owner/name`.
        tokenizer: a tokenizer object or folder / Hub id (default: the one the model was loaded with).
        provenance: what the model card states about the model's origin (default: worked out from `model`).
        local_dir: where the Hub-ready folder is written first (default `$HF_HOME/hooked_bilinear/push/owner--name`).
        overwrite: replace an existing repo (and an existing `local_dir` you chose).
        private: create the repo private.
        token: a Hub token (default: huggingface_hub's login).
        endpoint: a Hub endpoint (default `HF_ENDPOINT` or huggingface.co).
        commit_message: the upload's commit message.
        timeout: seconds to wait for the upload.
        as_llama: write a tdooms model in stock Llama form (None: when it has one), as in `save_pretrained`.
        processed_weights: allow a bridge after TransformerLens's weight processing (the card says so).
        token_ids_only: allow a model without a tokenizer (models that take token ids).

    Returns:
        The URL of the upload's commit.

    Raises:
        PublishError: the repo id has no owner; the folder does not load; the repo exists (without `overwrite`);
            the credentials are refused; the endpoint is unreachable or does not answer within `timeout`.
        ConversionError: as in `save_pretrained` (a processed bridge, `as_llama=True` without a Llama form).

    Examples:
        Needs the network and a Hub token (`huggingface-cli login` or `token=`), so it is not run by the tests:

        >>> import hooked_bilinear as hb
        >>> hb.push_to_hub("ts-synthetic-2l", "me/ts-synthetic-2l-llama")  # doctest: +SKIP
    """
    check_repo_id(repo_id)
    folder = Path(local_dir) if local_dir is not None else staging_folder(repo_id)
    save_pretrained(
        model,
        folder,
        tokenizer=tokenizer,
        provenance=provenance,
        name=repo_id,
        overwrite=overwrite or local_dir is None,
        as_llama=as_llama,
        processed_weights=processed_weights,
        token_ids_only=token_ids_only,
    )
    return push_folder_to_hub(
        folder,
        repo_id,
        overwrite=overwrite,
        private=private,
        token=token,
        endpoint=endpoint,
        commit_message=commit_message,
        timeout=timeout,
    )
