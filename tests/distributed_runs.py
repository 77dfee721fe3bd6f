"""Runs of bilinearize in spawned gloo process groups (CPU), for tests/making/test_distributed.py: the worker
runs several scenarios in one process group (starting processes is the slow part) and rank 0 saves what it got."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

TEXTS = [
    f"once upon a time there was a {a} {b} who liked {c} ."
    for a in ("little", "big", "happy", "sad")
    for b in ("cat", "dog", "bird", "fish", "girl", "boy")
    for c in ("apples", "the sun", "to play", "the park")
]
RUN = dict(steps=20, batch_size=4, seq_len=16, warmup_steps=3, checkpoint_every=5, lr=1e-3, progress=False)


def write_corpus(folder: Path) -> Path:
    """A local parquet corpus of 96 short stories in a column named "story"."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"story": TEXTS, "id": list(range(len(TEXTS)))}), folder / "stories.parquet")
    return folder / "stories.parquet"


def tokenizer() -> Any:
    from hooked_bilinear.loading.pretrained import resolve_folder
    from hooked_bilinear.loading.tokenizer import load_folder_tokenizer

    return load_folder_tokenizer(resolve_folder("ts-synthetic-2l"))  # vocab 330, like tests/llama.py's models


def run(
    tmp: Path,
    name: str,
    strategy: str = "auto",
    crash_at: int | None = None,
    cache: str = "cache",
    micro_batch_size: int | None = None,
    tied: bool = False,
) -> dict[str, Any] | None:
    """bilinearize a tiny SwiGLU Llama on the parquet corpus (20 steps, global batch 4) with checkpoints in tmp/name;
    `crash_at`: raise KeyboardInterrupt before that step (on every rank); the corpus is tokenized into tmp/cache once
    per cache folder. Returns what rank 0 got."""
    from hooked_bilinear.making import data as data_module
    from hooked_bilinear.making.bilinearize import bilinearize
    from hooked_bilinear.making.corpus import Corpus
    from hooked_bilinear.publishing.provenance import provenance_of
    from tests.llama import tiny_llama

    real_batch = data_module.PackedSequences.batch
    steps_run: set[int] = set()

    def batch(self, step, *args, **kwargs):
        if crash_at is not None and step == crash_at:
            raise KeyboardInterrupt("simulated interruption")
        steps_run.add(step)
        return real_batch(self, step, *args, **kwargs)

    data_module.PackedSequences.batch = batch
    try:
        model = bilinearize(
            tiny_llama("silu", std=0.05, tie_word_embeddings=tied),
            Corpus(str(tmp / "corpus"), text_column="story"),
            tokenizer=tokenizer(),
            checkpoint_dir=tmp / name,
            data_cache=tmp / cache,
            strategy=strategy,
            device="cpu",
            micro_batch_size=micro_batch_size,
            **RUN,
        )
    except KeyboardInterrupt:
        return None
    finally:
        data_module.PackedSequences.batch = real_batch
    if model is None:
        return None
    return {
        "state": model.state_dict(),
        "hidden_act": model.config.hidden_act,
        "model": model,
        "fold": provenance_of(model).max_abs_logit_diff,
        "steps_run": sorted(steps_run),
        "tied": model.lm_head.weight is model.model.embed_tokens.weight,
    }


def worker(rank: int, world_size: int, port: int, tmp: str) -> None:
    """Two-process scenarios: DDP and FSDP runs; DDP and FSDP runs interrupted at step 12 (last checkpoint: step 10),
    copied for resuming on 1 process (by the test) and on 2 (here); DDP and FSDP with gradient accumulation; FSDP with
    tied embeddings."""
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    folder = Path(tmp)
    results: dict[str, Any] = {}
    for name, strategy in (("ddp", "ddp"), ("fsdp", "fsdp")):
        results[name] = run(folder, name, strategy, cache="cache-2-processes")  # tokenized by both ranks
        assert run(folder, f"{name}-interrupted", strategy, crash_at=12) is None
        dist.barrier()
        if rank == 0:
            for copy in ("resume1", "resume2"):
                shutil.copytree(folder / f"{name}-interrupted", folder / f"{name}-{copy}")
        dist.barrier()
        results[f"{name}-resume2"] = run(folder, f"{name}-resume2", strategy)
        results[f"{name}-micro"] = run(folder, f"{name}-micro", strategy, micro_batch_size=1)  # 2 micro-batches
    results["fsdp-tied"] = run(folder, "fsdp-tied", "fsdp", tied=True)  # lm_head = embed_tokens (Llama-3.2-1B)
    if rank == 0:
        torch.save(
            {
                k: {key: v[key] for key in ("state", "hidden_act", "fold", "steps_run", "tied")}
                for k, v in results.items()
            },
            folder / "results.pt",
        )
    dist.destroy_process_group()
    os._exit(0)  # as the command line does under torchrun: FSDP2's leaked gloo group cannot abort the shutdown


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
