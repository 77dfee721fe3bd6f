"""A disk cache of streamed activations: the store's activations written once as sharded safetensors with a manifest,
read back memory-mapped in a seeded shuffled order (SAELens's CacheActivationsRunner, without SAELens).

    write_cache(store, "acts/")                         # resumable: run it again after an interruption
    cache = ActivationCache("acts/", model=model, hook_names=["blocks.0.mlp.hook_in"])
    for batch in cache.batches(4096, buffer_size=65536):  # shuffled shards and rows, an ActivationStream
        ...

Shard i holds the activations of sequences [i * shard_sequences, (i + 1) * shard_sequences) (one tensor per hook
and their `index`), so a shard's content does not depend on the run that wrote it. A shard is written to a
temporary file and renamed into place, then the manifest (also renamed into place) lists it: a shard the manifest
does not list is never read, and a resumed run writes it again. Under torchrun each rank writes the shards
i = rank (mod world size) and its own manifest part; `ActivationCache` reads all parts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from beartype import beartype
from safetensors import safe_open
from safetensors.torch import save

from hooked_bilinear.activations.store import ActivationBatch, ActivationStore, Streams
from hooked_bilinear.errors import SAEError

logger = logging.getLogger(__name__)

FORMAT = "hooked-bilinear-activations/1"


def model_hash(model: Any) -> str:
    """A sha256 fingerprint of a model's parameters (names, shapes, values)."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0]):
        digest.update(f"{name}{tuple(parameter.shape)}{parameter.dtype}".encode())
        digest.update(parameter.detach().cpu().contiguous().view(torch.uint8).reshape(-1).numpy().tobytes())
    return digest.hexdigest()[:16]


def _write_json_atomic(path: Path, value: Any) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(value, indent=1))
    os.replace(partial, path)


def _write_shard(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Serialise here and write to our own temporary name: safetensors' save_file writes through a temporary file of
    its own (.tmpXXXXXX) that a killed writer leaves in the folder, where no resume would remove it."""
    path.write_bytes(save(tensors))


def _shard_name(i: int) -> str:
    return f"shard-{i:06d}.safetensors"


def _part_name(rank: int, world_size: int) -> str:
    return f"manifest.part{rank}-of-{world_size}.json"


@beartype
def write_cache(
    store: ActivationStore,
    folder: str | Path,
    *,
    shard_sequences: int = 256,
    model_id: str | None = None,
    overwrite: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
) -> Path:
    """Write the store's activations (in corpus order, unshuffled) to `folder` as shards plus `manifest.json`.

    Run again on the same folder with the same model, hooks and tokens, it goes on from the last shard written.

    Args:
        store: the activation store (its hooks, dtype and exclusions are what is cached).
        folder: where the shards and the manifest go.
        shard_sequences: sequences per shard (a multiple of the store's model_batch_size).
        model_id: a name recorded in the manifest (default: the model's cfg.model_name).
        overwrite: replace a cache of other settings in `folder` (else refused).
        rank, world_size: this process's share (default: torch.distributed's, or 0 of 1): rank r writes the
            shards i = r (mod world_size).

    Returns:
        The folder.

    Raises:
        SAEError: `folder` holds a cache of another model, hooks, tokens or settings (and not overwrite), or
            shard_sequences is not a multiple of model_batch_size.
    """
    if shard_sequences < 1 or shard_sequences % store.model_batch_size:
        raise SAEError(
            f"shard_sequences ({shard_sequences}) must be a positive multiple of the store's model_batch_size "
            f"({store.model_batch_size})."
        )
    if rank is None or world_size is None:
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized()
        rank = dist.get_rank() if distributed else 0
        world_size = dist.get_world_size() if distributed else 1
    folder = Path(folder)
    model = store.model
    settings = {
        "format": FORMAT,
        "model": model_hash(model),
        "model_id": model_id or str(getattr(getattr(model, "cfg", None), "model_name", "")),
        "hooks": list(store.hook_names),
        "tokens": store.source_hash(),
        "dtype": str(store.dtype).removeprefix("torch."),
        "seq_len": store.seq_len,
        "n_sequences": store.n_sequences,
        "shard_sequences": shard_sequences,
        "excluded": store.excluded.tolist(),
    }
    n_shards = -(-store.n_sequences // shard_sequences)
    part_path = folder / _part_name(rank, world_size)
    done: dict[str, Any] = {}
    manifest_path = folder / "manifest.json"
    for path in (manifest_path, part_path):
        if path.is_file():
            old = json.loads(path.read_text())
            if old.get("settings") != settings:
                if not overwrite:
                    raise SAEError(
                        f"{folder} holds a cache of other settings:{_difference(old.get('settings'), settings)}; choose another folder or pass overwrite=True."
                    )
                for stale in [*folder.glob("shard-*.safetensors"), *folder.glob("manifest*.json")]:
                    stale.unlink()
                break
            if path == part_path or world_size == 1:
                done.update(old["shards"])
    folder.mkdir(parents=True, exist_ok=True)
    mine = [i for i in range(n_shards) if i % world_size == rank]
    for i in mine:
        if str(i) in done:
            continue
        start = i * shard_sequences
        chunks = list(store.chunks(start, start + shard_sequences))
        batch = ActivationBatch(
            {name: torch.cat([c.activations[name] for c in chunks]).cpu().contiguous() for name in store.hook_names},
            torch.cat([c.index for c in chunks]),
        )
        tensors = {f"act.{name}": act for name, act in batch.activations.items()} | {"index": batch.index}
        partial = folder / (_shard_name(i) + ".tmp")
        _write_shard(tensors, partial)
        os.replace(partial, folder / _shard_name(i))  # a shard is whole or absent
        done[str(i)] = {"rows": len(batch.index), "d": {n: a.shape[1] for n, a in batch.activations.items()}}
        _write_json_atomic(part_path, {"settings": settings, "shards": done})
        logger.info("wrote shard %d of %d to %s", i + 1, n_shards, folder)
    if world_size == 1 and len(done) == n_shards:
        _write_json_atomic(manifest_path, {"settings": settings, "shards": done, "complete": True})
        part_path.unlink(missing_ok=True)
    return folder


def _difference(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return " (not a hooked-bilinear activation cache)"
    keys = [key for key in new if old.get(key) != new[key]]
    return "".join(f" {key} {old.get(key)!r} (asked: {new[key]!r})" for key in keys)


def finish_cache(folder: str | Path, world_size: int) -> Path:
    """Merge the manifest parts of `world_size` ranks into manifest.json (call on one rank after all have
    written; `write_cache` does it itself for one process).

    Raises:
        SAEError: a part is missing or incomplete, or the parts disagree.
    """
    folder = Path(folder)
    shards: dict[str, Any] = {}
    settings = None
    for rank in range(world_size):
        path = folder / _part_name(rank, world_size)
        if not path.is_file():
            raise SAEError(f"{path} is missing: rank {rank} has not finished writing its shards; run it again.")
        part = json.loads(path.read_text())
        if settings is not None and part["settings"] != settings:
            raise SAEError(f"the manifest parts in {folder} disagree on their settings; rewrite the cache.")
        settings = part["settings"]
        shards.update(part["shards"])
    assert settings is not None
    n_shards = -(-settings["n_sequences"] // settings["shard_sequences"])
    if len(shards) != n_shards:
        raise SAEError(f"{folder} holds {len(shards)} of {n_shards} shards; run write_cache again to finish it.")
    _write_json_atomic(folder / "manifest.json", {"settings": settings, "shards": shards, "complete": True})
    for rank in range(world_size):
        (folder / _part_name(rank, world_size)).unlink()
    return folder


class ActivationCache(Streams):
    """A finished activation cache, read back memory-mapped: a ChunkSource (one shard per chunk) for
    `ActivationStream`, so `batches` / `stream` give what an ActivationStore gives, shuffled over shards and rows.

    Args:
        folder: the cache's folder (with manifest.json).
        model: when given, the cache must have been written from a model with the same parameters.
        hook_names: the hooks to read (default: all cached); each must be cached.
        buffer_size: rows in the shuffle buffer (0: shards in a random order, rows unshuffled within a shard).
        seed: the shuffle's seed.
        dtype, device: of the activations handed out (default: as cached, on CPU).

    Raises:
        SAEError: no finished cache in `folder`, or one of another model, or without a hook asked for.
    """

    shuffle_chunks = True
    progress = False

    @beartype
    def __init__(
        self,
        folder: str | Path,
        *,
        model: Any = None,
        hook_names: str | Sequence[str] | None = None,
        buffer_size: int = 0,
        seed: int = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.folder = Path(folder)
        path = self.folder / "manifest.json"
        if not path.is_file():
            raise SAEError(
                f"{self.folder} holds no finished activation cache (no manifest.json): write it with write_cache "
                "(run it again to finish an interrupted one)."
            )
        manifest = json.loads(path.read_text())
        settings = manifest.get("settings", {})
        if settings.get("format") != FORMAT or not manifest.get("complete"):
            raise SAEError(f"{path} is not a finished {FORMAT} manifest.")
        if model is not None and settings["model"] != model_hash(model):
            raise SAEError(
                f"the cache in {self.folder} was written from another model ({settings['model_id'] or 'unnamed'}, "
                f"parameters {settings['model']}; this model's are {model_hash(model)}): write a cache for this model."
            )
        names = (
            settings["hooks"]
            if hook_names is None
            else ([hook_names] if isinstance(hook_names, str) else list(hook_names))
        )
        missing = [name for name in names if name not in settings["hooks"]]
        if missing:
            raise SAEError(
                f"the cache in {self.folder} holds hooks {settings['hooks']}, not {missing[0]!r}: write a cache of that hook."
            )
        self.manifest = settings
        self.hook_names = names
        self.shards = sorted(int(i) for i in manifest["shards"])
        self.rows = {int(i): int(shard["rows"]) for i, shard in manifest["shards"].items()}
        self.buffer_size, self.seed = buffer_size, seed
        self.dtype, self.device = dtype, torch.device(device) if device is not None else None
        self.seq_len = int(settings["seq_len"])

    @property
    def n_chunks(self) -> int:
        """Shards."""
        return len(self.shards)

    @property
    def n_rows(self) -> int:
        """Activations per hook in the cache."""
        return sum(self.rows.values())

    def chunk(self, i: int) -> ActivationBatch:
        """The activations of the i-th shard (memory-mapped read)."""
        with safe_open(str(self.folder / _shard_name(self.shards[i])), framework="pt") as f:
            acts = {}
            for name in self.hook_names:
                act = f.get_tensor(f"act.{name}")
                acts[name] = act.to(device=self.device or act.device, dtype=self.dtype or act.dtype)
            return ActivationBatch(acts, f.get_tensor("index"))

    def settings(self) -> dict[str, Any]:
        """What decides the stream's content and order (checked when a stream state is loaded)."""
        return {
            "hooks": list(self.hook_names),
            "buffer_size": self.buffer_size,
            "seed": self.seed,
            "cache": {key: self.manifest[key] for key in ("model", "tokens", "n_sequences", "shard_sequences")},
        }
