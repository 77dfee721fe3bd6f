"""Text corpora for fine-tuning, read with Hugging Face `datasets` and tokenized with the model's tokenizer into one
token stream (each document's ids followed by the EOS token), cached as a .npy file that every rank memory-maps.

Sources: local .txt / .jsonl / .json / .parquet / .arrow files (or a folder of them), read offline; or a Hub dataset
name, streamed (split, config name, revision), of which only the tokens the run needs are read. Local files are
tokenized in parallel, each rank a contiguous share of the documents, concatenated in order: the stream is the same
for any number of processes. A streamed corpus is read by rank 0 alone while the others wait.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from beartype import beartype
from jaxtyping import Int

from hooked_bilinear import atomic
from hooked_bilinear.errors import DatasetError
from hooked_bilinear.making import distributed as distributed_

logger = logging.getLogger(__name__)

BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
}


@dataclass(frozen=True)
class Corpus:
    """A text dataset: a local file or folder, or a Hub dataset name (streamed); `text_column` holds the documents
    (.txt files: each line a document); `split`, `name` (config) and `revision` apply to Hub datasets."""

    source: str
    text_column: str = "text"
    split: str = "train"
    name: str | None = None
    revision: str | None = None


def is_corpus_path(source: Any) -> bool:
    """True for a path to a text file, or a folder, that `load_corpus` reads."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source)
    return path.suffix in BUILDERS or path.is_dir()


def local_files(path: Path) -> tuple[str, list[Path]]:
    """The `datasets` builder and the files of a local corpus (a file, or a folder's files of one kind, sorted)."""
    if path.is_file():
        if path.suffix not in BUILDERS:
            raise DatasetError(f"{path}: a corpus file must end in one of {sorted(BUILDERS)}.")
        return BUILDERS[path.suffix], [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in BUILDERS)
    if not files:
        raise DatasetError(f"{path} holds no corpus files ({', '.join(sorted(BUILDERS))}).")
    builders = {BUILDERS[p.suffix] for p in files}
    if len(builders) > 1:
        raise DatasetError(f"{path} mixes file kinds ({sorted(builders)}); put one kind in a folder.")
    return builders.pop(), files


def _fingerprint(corpus: Corpus, tokenizer: Any, max_tokens: int | None) -> str:
    path = Path(corpus.source)
    if path.exists():
        _, files = local_files(path)
        origin: Any = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    else:
        origin = corpus.source
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    record = json.dumps([asdict(corpus), origin, vocab, tokenizer.eos_token_id, max_tokens], default=str)
    return hashlib.sha256(record.encode()).hexdigest()[:16]


def _tokenize(texts: list[str], tokenizer: Any) -> list[int]:
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for doc in tokenizer(texts)["input_ids"]:
        ids.extend(doc)
        if eos is not None and (not doc or doc[-1] != eos):
            ids.append(eos)
    return ids


def _check_column(columns: list[str], corpus: Corpus) -> None:
    if corpus.text_column not in columns:
        raise DatasetError(
            f"{corpus.source} has no column {corpus.text_column!r} (its columns: {columns}); pass the "
            f"one that holds the text (--text-column)."
        )


def _load_local(corpus: Corpus, cache: Path) -> Any:
    import datasets

    builder, files = local_files(Path(corpus.source))
    try:
        return datasets.load_dataset(
            builder, data_files=[str(p) for p in files], split="train", cache_dir=str(cache / "hf")
        )
    except Exception as error:  # datasets raises many kinds for unreadable files; name the files
        written = atomic.os_error_in(error)
        if written is not None and written.errno in atomic.FULL:  # writing its arrow cache failed
            raise atomic.write_error(cache / "hf", error) from error
        raise DatasetError(
            f"could not read {corpus.source} as {builder} files ({type(error).__name__}: {error})."
        ) from error


def _local_tokens(corpus: Corpus, tokenizer: Any, cache: Path, final: Path) -> None:
    """Every rank tokenizes a contiguous share of the documents; rank 0 concatenates the shares in order."""
    me = distributed_.session()
    error = None
    if me.main:  # builds the arrow cache once, before the others read it
        try:
            _load_local(corpus, cache)
        except DatasetError as caught:
            error = str(caught)
    error = distributed_.broadcast_object(error)  # every rank raises, none waits forever
    if error is not None:
        raise DatasetError(error)
    dataset = _load_local(corpus, cache)
    _check_column(list(dataset.column_names), corpus)
    share = dataset.shard(num_shards=me.world_size, index=me.rank, contiguous=True)
    ids: list[int] = []
    for start in range(0, len(share), 1000):
        ids.extend(_tokenize(list(share[start : start + 1000][corpus.text_column]), tokenizer))
    part = _part(final, me.rank, me.world_size)
    try:
        np.save(part, np.asarray(ids, dtype=np.int32))
    except OSError as failure:
        part.unlink(missing_ok=True)
        raise atomic.write_error(final, failure) from failure
    distributed_.barrier()
    if me.main:
        parts = [_part(final, r, me.world_size) for r in range(me.world_size)]
        try:
            _save_atomic(final, np.concatenate([np.load(p) for p in parts]))
        finally:  # a failed final write leaves no part behind either
            for p in parts:
                p.unlink(missing_ok=True)


def _streamed_tokens(corpus: Corpus, tokenizer: Any, max_tokens: int, final: Path) -> None:
    import datasets

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get("HF_DATASETS_OFFLINE", "0") not in (
        "0",
        "",
    ):
        raise DatasetError(
            f"{corpus.source!r} is neither a local file or folder nor reachable: the Hub is switched "
            f"off (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE). Pass a local .txt / .jsonl / .parquet / .arrow "
            f"file or folder, or a token file (.pt / .npy)."
        )
    try:
        stream = datasets.load_dataset(
            corpus.source, corpus.name, split=corpus.split, streaming=True, revision=corpus.revision
        )
        ids: list[int] = []
        texts: list[str] = []
        for record in stream:
            if corpus.text_column not in record:
                _check_column(list(record), corpus)
            texts.append(record[corpus.text_column])
            if len(texts) == 256:
                ids.extend(_tokenize(texts, tokenizer))
                texts = []
                if len(ids) >= max_tokens:
                    break
        ids.extend(_tokenize(texts, tokenizer))
    except DatasetError:
        raise
    except Exception as error:  # network, unknown name, missing split: name the dataset and what was asked
        raise DatasetError(
            f"could not stream the Hub dataset {corpus.source!r} (config {corpus.name!r}, split "
            f"{corpus.split!r}): {type(error).__name__}: {error}"
        ) from error
    _save_atomic(final, np.asarray(ids[:max_tokens], dtype=np.int32))


def _save_atomic(path: Path, array: np.ndarray) -> None:
    def write(temporary: Path) -> None:
        with temporary.open("wb") as file:  # a file object: np.save would add .npy to the temporary's name
            np.save(file, array)

    atomic.write_file(path, write)


def _part(final: Path, rank: int, world_size: int) -> Path:
    """Where a rank's share of the tokens waits to be concatenated: a hidden temporary that
    `atomic.remove_leftovers(final)` deletes if its build was killed."""
    return final.with_name(f".{final.name}.tmp-part{rank}-of-{world_size}.npy")


@beartype
def load_corpus(
    corpus: Corpus, tokenizer: Any, cache_dir: str | Path, max_tokens: int | None = None
) -> Int[np.ndarray, " n"]:
    """The corpus's token stream (int32, memory-mapped from `cache_dir`); tokenized on first use, by every rank of a
    process group together (call it on all ranks). `max_tokens` bounds what is read from a streamed Hub dataset."""
    if tokenizer is None:
        raise DatasetError(
            f"the text corpus {corpus.source} needs a tokenizer: the model folder has none, so pass "
            f"tokenizer= (--tokenizer FOLDER_OR_HUB_ID), or give token ids in a .pt / .npy file."
        )
    cache = Path(cache_dir)
    local = Path(corpus.source).exists()
    if not local and is_corpus_path(corpus.source):
        raise DatasetError(f"corpus file {corpus.source} does not exist.")
    final = cache / f"tokens-{_fingerprint(corpus, tokenizer, None if local else max_tokens)}.npy"
    with contextlib.ExitStack() as stack:
        if distributed_.session().main:  # another run building the same cache waits, then reads this one's
            cache.mkdir(parents=True, exist_ok=True)
            stack.enter_context(atomic.locked(final))
            atomic.remove_leftovers(final)  # of a build that was killed
        distributed_.barrier()
        if not final.is_file():
            logger.info("tokenizing %s into %s", corpus.source, final)
            if local:
                _local_tokens(corpus, tokenizer, cache, final)
            else:
                error = None
                if distributed_.session().main:
                    try:
                        _streamed_tokens(corpus, tokenizer, max_tokens or 10**9, final)
                    except DatasetError as caught:
                        error = str(caught)
                error = distributed_.broadcast_object(error)  # every rank raises, none waits forever
                if error is not None:
                    raise DatasetError(error)
        distributed_.barrier()
    return np.load(final, mmap_mode="r")
