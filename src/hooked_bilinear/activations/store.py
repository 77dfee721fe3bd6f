"""A streaming activation store: activations of one or several hooks of a bridge, computed batch by batch from a
token source in one forward pass per batch of sequences, mixed across sequences in a seeded shuffle buffer, never the
whole dataset in memory (SAELens's ActivationsStore, without SAELens).

    store = ActivationStore(model, tokens, ["blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out"], buffer_size=65536)
    for batch in store.batches(4096):            # shuffled; batch.activations[hook] [4096, d], batch.index [4096]
        ...
    for batch in store.batches(4096, shuffle=False):   # in corpus order (for top-k contexts)
        ...

The token source is cut into sequences of `seq_len` tokens (the model's context by default); activation `index`
`sequence * seq_len + position` says where each row came from. The forward pass stops after the last hook it needs:
a later layer is never computed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from beartype import beartype
from tqdm.auto import tqdm

from hooked_bilinear.errors import DatasetError, SAEError
from hooked_bilinear.making.corpus import Corpus, load_corpus

logger = logging.getLogger(__name__)

Source = torch.Tensor | np.ndarray | str | os.PathLike | Corpus


@dataclass(frozen=True)
class ActivationBatch:
    """Activations of each hook [n, d_hook] and where each row came from: index [n] = sequence * seq_len + position."""

    activations: dict[str, torch.Tensor]
    index: torch.Tensor


class _StopForward(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised from the hook of the last activation needed: the rest of the forward pass is skipped."""


def _token_rows(
    source: Source,
    seq_len: int | None,
    n_ctx: int,
    tokenizer: Any,
    corpus_cache: str | Path | None,
    max_sequences: int | None = None,
) -> Any:
    """The token source as something indexable by rows [n_seq, seq_len] (a tensor, or a memory-mapped array); a
    1-D stream is cut into sequences of `seq_len` (default `n_ctx`)."""
    if isinstance(source, Corpus):
        if corpus_cache is None:
            raise DatasetError("a Corpus is tokenized into a cache folder: pass corpus_cache=FOLDER.")
        max_tokens = None if max_sequences is None else max_sequences * (seq_len or n_ctx)  # a Hub stream: read no more
        stream: Any = load_corpus(source, tokenizer, corpus_cache, max_tokens=max_tokens)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DatasetError(f"token file {path} does not exist.")
        if path.suffix == ".npy":
            stream = np.load(path, mmap_mode="r")  # memory-mapped: the corpus need not fit in memory
        elif path.suffix == ".pt":
            stream = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise DatasetError(f"token file {path} must be a .npy (an integer array) or .pt (a LongTensor) file.")
    else:
        stream = source
    if isinstance(stream, torch.Tensor):
        if stream.dtype.is_floating_point or stream.dtype == torch.bool:
            raise DatasetError(f"tokens must be integers, got dtype {stream.dtype}.")
    elif isinstance(stream, np.ndarray):
        if not np.issubdtype(stream.dtype, np.integer):
            raise DatasetError(f"tokens must be integers, got dtype {stream.dtype}.")
    else:
        raise DatasetError(f"tokens must be a tensor, an array, a .npy / .pt file or a Corpus, got {type(stream)}.")
    if stream.ndim == 2:
        if seq_len is not None and stream.shape[1] != seq_len:
            raise DatasetError(f"token rows have {stream.shape[1]} positions but seq_len={seq_len} was asked.")
        return stream
    if stream.ndim != 1:
        raise DatasetError(f"tokens must be 1-D (a stream) or 2-D (rows), got shape {tuple(stream.shape)}.")
    seq_len = seq_len or n_ctx
    n = len(stream) // seq_len
    return stream[: n * seq_len].reshape(n, seq_len)


def token_hash(rows: Any, chunk: int = 1 << 16) -> str:
    """A sha256 fingerprint of token rows [n_seq, seq_len] (read in chunks: a memory-mapped corpus is not loaded)."""
    digest = hashlib.sha256(f"{tuple(rows.shape)}".encode())
    for start in range(0, rows.shape[0], chunk):
        block = rows[start : start + chunk]
        array = block.numpy() if isinstance(block, torch.Tensor) else np.asarray(block)
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


class Streams:
    """`stream` and `batches` of a chunk source (an ActivationStore or ActivationCache)."""

    def stream(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> ActivationStream:
        """A resumable iterator of batches of `batch_size` activations (see ActivationStream)."""
        return ActivationStream(
            cast(ChunkSource, self), batch_size, shuffle=shuffle, drop_last=drop_last, generator=generator
        )

    def batches(self, batch_size: int, *, shuffle: bool = True, drop_last: bool = False) -> Iterator[ActivationBatch]:
        """Batches of `batch_size` activations over one pass of the source: shuffled (through the buffer, and for
        a cache the shard order), or in order with shuffle=False. The last batch is smaller unless `drop_last`."""
        return iter(self.stream(batch_size, shuffle=shuffle, drop_last=drop_last))


class ActivationStore(Streams):
    """Activations of `hook_names` over a token source, streamed (see module doc).

    Args:
        model: a bridge (anything with `hook_dict`, `hooks(fwd_hooks=...)` and a forward taking token ids).
        tokens: token ids: a tensor or array [n_seq, pos] or a 1-D stream (cut into sequences of `seq_len`), a .npy
            (memory-mapped) or .pt file, or a `Corpus` (tokenized with the model's tokenizer into `corpus_cache`).
        hook_names: one hook name or several, all read in the same forward pass.
        seq_len: tokens per sequence for a 1-D stream (default: the model's context, `model.cfg.n_ctx`).
        model_batch_size: sequences per forward pass.
        buffer_size: activations held in the shuffle buffer (0: no shuffling). Each refill shuffles the buffer with
            the seeded generator and hands out all but `buffer_size // 2` rows, so rows of different sequences mix.
        seed: the shuffle buffer's seed: the same seed gives the same stream.
        exclude_bos, exclude_eos: leave out the positions holding the tokenizer's BOS / EOS token.
        exclude_tokens: further token ids whose positions are left out.
        dtype, device: of the activations handed out.
        progress: a tqdm bar over the sequences, with tokens/s.
        tokenizer: for a Corpus and for exclude_bos / exclude_eos (default: `model.tokenizer`).
        corpus_cache: the folder a Corpus is tokenized into.
        max_sequences: read at most this many sequences (from the start).
        share: (rank, world_size): stream only this process's share of the forward batches (i = rank mod
            world_size), as each rank does under torchrun; merge statistics with `stats.merge_across_ranks`.

    Raises:
        SAEError: a hook the model lacks.
        DatasetError: a bad token source, or fewer tokens than one sequence.
    """

    @beartype
    def __init__(
        self,
        model: Any,
        tokens: Source,
        hook_names: str | Sequence[str],
        *,
        seq_len: int | None = None,
        model_batch_size: int = 32,
        buffer_size: int = 0,
        seed: int = 0,
        exclude_bos: bool = False,
        exclude_eos: bool = False,
        exclude_tokens: Sequence[int] = (),
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        progress: bool = False,
        tokenizer: Any = None,
        corpus_cache: str | Path | None = None,
        max_sequences: int | None = None,
        share: tuple[int, int] | None = None,
    ) -> None:
        names = [hook_names] if isinstance(hook_names, str) else list(hook_names)
        if not names or len(set(names)) != len(names):
            raise SAEError(f"hook_names must be one or several distinct hook names, got {names}.")
        missing = [name for name in names if name not in model.hook_dict]
        if missing:
            raise SAEError(
                f"the model has no hook {missing[0]!r} (e.g. blocks.0.mlp.hook_in, blocks.0.mlp.hook_out); "
                "model.hook_dict lists them."
            )
        if share is not None and not 0 <= share[0] < share[1]:
            raise ValueError(f"share must be (rank, world_size) with 0 <= rank < world_size, got {share}.")
        if model_batch_size < 1 or buffer_size < 0:
            raise ValueError(
                f"model_batch_size must be >= 1 and buffer_size >= 0, got {model_batch_size}, {buffer_size}."
            )
        tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        excluded = list(exclude_tokens)
        for wanted, attribute in ((exclude_bos, "bos_token_id"), (exclude_eos, "eos_token_id")):
            if wanted:
                token = getattr(tokenizer, attribute, None)
                if token is None:
                    raise DatasetError(
                        f"cannot exclude {attribute[:3].upper()} positions: the tokenizer has no {attribute}."
                    )
                excluded.append(int(token))
        rows = _token_rows(tokens, seq_len, int(model.cfg.n_ctx), tokenizer, corpus_cache, max_sequences)
        if max_sequences is not None:
            rows = rows[:max_sequences]
        if rows.shape[0] < 1:
            raise DatasetError(f"the token source holds fewer tokens than one sequence of {seq_len}.")
        self.model = model
        self.rows = rows
        self.hook_names = names
        self.seq_len = int(rows.shape[1])
        self.n_sequences = int(rows.shape[0])
        self.model_batch_size = model_batch_size
        self.buffer_size = buffer_size
        self.seed = seed
        self.excluded = torch.tensor(sorted(set(excluded)), dtype=torch.long)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else None
        self.progress = progress
        self.tokenizer = tokenizer
        self.share = share or (0, 1)
        self.forward_passes = 0  # counts forward passes; tests check that later layers are skipped
        self._hash: str | None = None

    @property
    def n_tokens(self) -> int:
        """Token positions in the source (before any exclusion)."""
        return self.n_sequences * self.seq_len

    def source_hash(self) -> str:
        """A fingerprint of the token rows (for cache manifests)."""
        if self._hash is None:
            self._hash = token_hash(self.rows)
        return self._hash

    def sequence_tokens(self, sequence: int) -> list[int]:
        """The token ids of one sequence (to show an activation's context)."""
        row = self.rows[sequence]
        return [int(t) for t in (row.tolist() if isinstance(row, torch.Tensor) else np.asarray(row).tolist())]

    def _model_device(self) -> torch.device:
        cfg_device = getattr(getattr(self.model, "cfg", None), "device", None)
        if cfg_device is not None:
            return torch.device(cfg_device)
        return next(self.model.parameters()).device

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations [b, pos, d] of every hook for token rows [b, pos]; the forward stops after the last one."""
        got: dict[str, torch.Tensor] = {}
        wanted = set(self.hook_names)

        def keep(activation: torch.Tensor, hook: Any) -> None:
            got[hook.name] = activation.detach()
            if wanted.issubset(got):
                raise _StopForward

        with torch.no_grad(), self.model.hooks(fwd_hooks=[(name, keep) for name in self.hook_names]):
            try:
                self.model(tokens.to(self._model_device()), return_type=None)
            except _StopForward:
                pass
        self.forward_passes += 1
        if not wanted.issubset(got):
            raise SAEError(f"the forward pass never reached hooks {sorted(wanted - set(got))}.")
        return got

    def _rows(self, start: int, stop: int) -> torch.Tensor:
        block = self.rows[start:stop]
        return block.long() if isinstance(block, torch.Tensor) else torch.from_numpy(np.asarray(block, dtype=np.int64))

    def chunks(self, start_sequence: int = 0, stop_sequence: int | None = None) -> Iterator[ActivationBatch]:
        """Activations of sequences [start, stop), one forward batch at a time, in corpus order (excluded positions
        dropped)."""
        stop = self.n_sequences if stop_sequence is None else min(stop_sequence, self.n_sequences)
        for first in range(start_sequence, stop, self.model_batch_size):
            last = min(first + self.model_batch_size, stop)
            tokens = self._rows(first, last)
            acts = self.forward(tokens)
            index = torch.arange(first * self.seq_len, last * self.seq_len)
            keep = None
            if len(self.excluded):
                keep = ~torch.isin(tokens.reshape(-1), self.excluded)
                index = index[keep]
            out = {}
            for name, act in acts.items():
                flat = act.reshape(-1, act.shape[-1])
                if keep is not None:
                    flat = flat[keep.to(flat.device)]
                out[name] = flat.to(device=self.device or flat.device, dtype=self.dtype)
            yield ActivationBatch(out, index)

    shuffle_chunks = False  # sequences are read in corpus order; the buffer mixes them

    @property
    def n_chunks(self) -> int:
        """Forward batches in one pass (of this process's share)."""
        rank, world_size = self.share
        return len(range(rank, -(-self.n_sequences // self.model_batch_size), world_size))

    def chunk(self, i: int) -> ActivationBatch:
        """The activations of the share's forward batch i (global batch j = rank + i * world_size: sequences
        [j * model_batch_size, (j + 1) * model_batch_size))."""
        start = (self.share[0] + i * self.share[1]) * self.model_batch_size
        return next(self.chunks(start, start + self.model_batch_size))

    def settings(self) -> dict[str, Any]:
        """What decides the stream's content and order (checked when a stream state is loaded)."""
        return {
            "hooks": list(self.hook_names),
            "buffer_size": self.buffer_size,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "n_sequences": self.n_sequences,
            "model_batch_size": self.model_batch_size,
            "excluded": self.excluded.tolist(),
            "share": list(self.share),
        }


def _cat(parts: list[ActivationBatch]) -> ActivationBatch:
    if len(parts) == 1:
        return parts[0]
    return ActivationBatch(
        {name: torch.cat([p.activations[name] for p in parts]) for name in parts[0].activations},
        torch.cat([p.index for p in parts]),
    )


def _take(batch: ActivationBatch, rows: slice | torch.Tensor) -> ActivationBatch:
    return ActivationBatch(
        {
            name: act[rows.to(act.device) if isinstance(rows, torch.Tensor) else rows]
            for name, act in batch.activations.items()
        },
        batch.index[rows],
    )


def _size(batch: ActivationBatch | None) -> int:
    return 0 if batch is None else len(batch.index)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: /proc/meminfo's MemAvailable; None where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_buffer_memory(chunk: ActivationBatch, buffer_size: int) -> None:
    """DatasetError when the shuffle buffer (and its shuffled copy) cannot fit in the memory available."""
    row = sum(a.shape[-1] * a.element_size() for a in chunk.activations.values()) + 8
    needed = 2 * buffer_size * row
    available = available_memory()
    if available is not None and needed > available:
        raise DatasetError(
            f"a shuffle buffer of {buffer_size} activations needs about {needed / 2**30:.1f} GiB (with its shuffled "
            f"copy), more than the {available / 2**30:.1f} GiB of memory available: pass a smaller buffer_size."
        )


class ChunkSource(Protocol):
    """What an ActivationStream reads: `n_chunks` chunks of activations (an ActivationStore: one forward batch of
    sequences each; an ActivationCache: one shard each), a shuffle buffer size, a seed, and whether the chunk order
    itself is shuffled."""

    buffer_size: int
    seed: int
    shuffle_chunks: bool

    @property
    def n_chunks(self) -> int: ...

    def chunk(self, i: int) -> ActivationBatch: ...

    def settings(self) -> dict[str, Any]: ...


class ActivationStream:
    """One pass over a ChunkSource (an ActivationStore or ActivationCache) in batches, resumable: `state_dict()`
    after any batch, and a new stream of the same source with `load_state_dict(state)` goes on with the very batches
    the first would have given.

    The shuffle: chunks are read in order (a cache's in a seeded random order) and their activations fill a buffer
    of `buffer_size` rows; the buffer is permuted with a generator seeded by the source's seed and all but
    `buffer_size // 2` of its rows are handed out; at the end of the source the whole buffer is handed out. For a
    store, a buffer at least as large as the source gives one `torch.randperm(n, generator=g)` of all activations,
    g = `torch.Generator().manual_seed(seed)` (the order of `sae.train_sae`'s first epoch on the same activations).

    Args:
        source: an ActivationStore or ActivationCache.
        batch_size: rows per batch.
        shuffle: through the buffer (and, for a cache, the shard order); False: in order.
        drop_last: leave out a last batch smaller than batch_size.
        generator: the shuffle's generator (default: seeded with source.seed); pass the previous pass's to go on
            drawing from it, as `train_sae` does from epoch to epoch.
    """

    def __init__(
        self,
        source: ChunkSource,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.source, self.batch_size, self.drop_last = source, batch_size, drop_last
        self.shuffle = shuffle
        self.generator = generator if generator is not None else torch.Generator().manual_seed(source.seed)
        n = source.n_chunks
        self.order = (
            torch.randperm(n, generator=self.generator) if shuffle and source.shuffle_chunks else torch.arange(n)
        )
        self.next_chunk = 0
        self.bar: Any = None
        self.buffer: ActivationBatch | None = None  # read, not yet shuffled
        self.ready: ActivationBatch | None = None  # shuffled, to hand out
        self.batches_given = 0

    def __iter__(self) -> ActivationStream:
        return self

    def _read(self) -> ActivationBatch | None:
        """The next chunk; None at the end of the source."""
        if self.next_chunk >= len(self.order):
            if self.bar is not None:
                self.bar.close()
            return None
        if self.bar is None:  # tokens/s: tqdm's rate with unit "tok"
            self.bar = tqdm(
                total=getattr(self.source, "n_tokens", None),
                desc="activations",
                unit="tok",
                unit_scale=True,
                disable=not getattr(self.source, "progress", False),
            )
        chunk = self.source.chunk(int(self.order[self.next_chunk]))
        if self.next_chunk == 0:
            _check_buffer_memory(chunk, self.source.buffer_size if self.shuffle else 0)
        self.bar.update(_size(chunk))
        self.next_chunk += 1
        return chunk

    def _refill(self) -> None:
        """Move rows from the buffer to `ready` (shuffled when asked) until `ready` holds a batch or all is read."""
        mixing = self.shuffle and self.source.buffer_size > 0
        target = self.source.buffer_size if mixing else 1
        while _size(self.ready) < self.batch_size:
            parts = [self.buffer] if self.buffer is not None and _size(self.buffer) else []
            size = _size(self.buffer)
            while size < target:  # read whole chunks, concatenated once
                chunk = self._read()
                if chunk is None:
                    break
                parts.append(chunk)
                size += _size(chunk)
            if size == 0:
                return
            self.buffer = _cat(parts)
            exhausted = self.next_chunk >= len(self.order)
            keep = 0 if (exhausted or not mixing) else self.source.buffer_size // 2
            mixed = _take(self.buffer, torch.randperm(size, generator=self.generator)) if mixing else self.buffer
            out, self.buffer = _take(mixed, slice(0, size - keep)), _take(mixed, slice(size - keep, size))
            self.ready = out if self.ready is None or _size(self.ready) == 0 else _cat([self.ready, out])

    def __next__(self) -> ActivationBatch:
        self._refill()
        size = _size(self.ready)
        if size == 0 or (size < self.batch_size and self.drop_last):
            raise StopIteration
        assert self.ready is not None
        take = min(size, self.batch_size)
        batch, self.ready = _take(self.ready, slice(0, take)), _take(self.ready, slice(take, size))
        self.batches_given += 1
        return batch

    def _settings(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "shuffle": self.shuffle, **self.source.settings()}

    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands: the chunk order and the next chunk to read, the buffer, what is shuffled and not
        yet handed out, and the generator (O(buffer_size) memory)."""

        def plain(batch: ActivationBatch | None) -> Any:
            if batch is None:
                return None
            return {"activations": {k: v.clone() for k, v in batch.activations.items()}, "index": batch.index.clone()}

        return {
            "order": self.order,
            "next_chunk": self.next_chunk,
            "buffer": plain(self.buffer),
            "ready": plain(self.ready),
            "generator": self.generator.get_state(),
            "batches_given": self.batches_given,
            "settings": self._settings(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from a `state_dict()` of a stream of the same source and settings.

        Raises:
            SAEError: the state is of a stream with other settings.
        """
        if state["settings"] != self._settings():
            raise SAEError(
                f"the saved stream state is for other settings ({state['settings']}) than this stream's "
                f"({self._settings()}); resume with the same hooks, batch and buffer sizes and seed."
            )

        def batch(plain: Any) -> ActivationBatch | None:
            return None if plain is None else ActivationBatch(dict(plain["activations"]), plain["index"])

        self.order, self.next_chunk = state["order"], int(state["next_chunk"])
        self.buffer, self.ready = batch(state["buffer"]), batch(state["ready"])
        self.generator.set_state(state["generator"])
        self.batches_given = int(state["batches_given"])
