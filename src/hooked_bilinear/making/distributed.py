"""Multi-process training through torch.distributed: the process group from torchrun's environment, DDP or FSDP2
(`fully_shard`) wrapping, global means, and checkpoints that resume on any number of processes.

Checkpoints are torch.distributed.checkpoint (DCP) folders: each rank writes its own shard of the model and the
optimizer in parallel (no rank ever holds the whole state, which is what a model too big for one GPU needs), and DCP
reshards on load, so a run saved by N processes resumes on M. A small progress.json (step, history, settings) sits
beside it. A checkpoint is written as `step-N.partial` and renamed when every rank has finished; `latest` names the
newest complete one (replaced atomically, fsynced: see docs/fault-tolerance.md).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from hooked_bilinear import atomic
from hooked_bilinear.errors import HookedBilinearError, WriteError

Strategy = Literal["auto", "ddp", "fsdp"]
STRATEGIES = ("auto", "ddp", "fsdp")
LATEST = "latest"
PROGRESS = "progress.json"


@dataclass(frozen=True)
class Session:
    """This process's place: rank, number of processes, rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def session() -> Session:
    """The current process group's view (a single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return Session(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return Session()


def init_from_env(device_type: str, timeout_minutes: float = 120.0) -> bool:
    """Initialise the process group from torchrun's variables (WORLD_SIZE > 1) if none is; True if this call did.
    NCCL for CUDA, gloo for CPU. The long timeout covers rank 0 tokenizing a streamed corpus while the others wait."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    backend, timeout = "nccl" if device_type == "cuda" else "gloo", datetime.timedelta(minutes=timeout_minutes)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if attempt == "0":
        dist.init_process_group(backend, timeout=timeout)
        return True
    # A group torchrun restarted (--max-restarts) meets in the same agent store as the attempt before: without a
    # prefix per attempt, ranks read the dead workers' addresses and fail to connect ("Connection refused").
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=rank == 0 and not agent_store,
        timeout=timeout,
    )
    dist.init_process_group(
        backend,
        store=dist.PrefixStore(f"hooked_bilinear/attempt-{attempt}", store),
        rank=rank,
        world_size=world_size,
        timeout=timeout,
    )
    return True


def device_for(requested: str | torch.device | None) -> torch.device:
    """The device this rank trains on: CUDA when available or asked (under torchrun the LOCAL_RANK-th GPU of this
    machine, read from the environment, so it is right before the process group exists), else CPU."""
    kind = torch.device(requested).type if requested is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind != "cuda":
        return torch.device(kind)
    if requested is not None and torch.device(requested).index is not None:
        return torch.device(requested)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cuda", torch.cuda.current_device())


def barrier() -> None:
    if session().distributed:
        dist.barrier()


def broadcast_object(value: Any) -> Any:
    """Rank 0's `value` on every rank."""
    if not session().distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def global_mean(value: torch.Tensor) -> float:
    """Mean of a scalar over the ranks (each rank holds an equal share of the global batch)."""
    if session().distributed:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= session().world_size
    return value.item()


def resolve_strategy(strategy: Strategy) -> Literal["none", "ddp", "fsdp"]:
    if strategy not in STRATEGIES:
        raise HookedBilinearError(f"strategy={strategy!r} is not one of {STRATEGIES} (--strategy).")
    if not session().distributed:
        return "none"
    return "ddp" if strategy == "auto" else strategy


def wrap(model: nn.Module, strategy: Literal["none", "ddp", "fsdp"], device: torch.device) -> nn.Module:
    """DDP (a full replica per rank, gradients all-reduced) or FSDP2 (`fully_shard` on every decoder layer and the
    root: parameters, gradients and optimizer state sharded across ranks). The model must already be on `device`."""
    if strategy == "ddp":
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.get_submodule("model.layers").children():
            fully_shard(layer)
        fully_shard(model)
    return model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, strategy: str, enabled: bool) -> Iterator[None]:
    """Accumulate gradients locally (no all-reduce / reduce-scatter) unless `enabled`: the last micro-batch syncs."""
    from torch.distributed.fsdp import FSDPModule

    if strategy == "ddp" and not enabled and isinstance(model, nn.parallel.DistributedDataParallel):
        with model.no_sync():
            yield
    elif strategy == "fsdp" and isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(enabled)
        yield
    else:
        yield


def save_checkpoint(
    folder: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, progress: dict[str, Any], keep: int = 1
) -> None:
    """Every rank writes its shard of `step-N.partial` (DCP fsyncs each file); rank 0 adds progress.json, renames the
    folder to `step-N`, points `latest` at it (an atomic replace, fsynced) and only then deletes older checkpoints
    beyond `keep`, and leftovers of a killed save. A kill at any moment leaves `latest` naming a complete checkpoint
    (or no `latest` before the first one); a failed write (disk full) raises one WriteError on every rank and keeps
    the previous checkpoint."""
    me = session()
    partial, final = folder / f"step-{step:08d}.partial", folder / f"step-{step:08d}"
    if me.main:
        for stale in folder.glob("step-*.partial"):  # of a save that was killed: never loaded, removed here
            shutil.rmtree(stale, ignore_errors=True)
        atomic.remove_leftovers(folder / LATEST)
        partial.mkdir(parents=True)
    barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    failure: BaseException | None = None
    try:
        with warnings.catch_warnings():  # one process without a process group: DCP warns that it saves alone, as meant
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(partial))
    except BaseException as error:  # DCP gathers every rank's failure into a CheckpointException (a BaseException)
        failure = error
    if failure is None:
        barrier()
    if me.main:
        try:
            if failure is not None:
                raise failure
            (partial / PROGRESS).write_text(json.dumps({**progress, "step": step}))
            atomic.fsync_tree(partial)
            shutil.rmtree(final, ignore_errors=True)  # a complete one `latest` never named (killed before the pointer)
            os.replace(partial, final)
            atomic.fsync_dir(folder)
            atomic.write_text(folder / LATEST, final.name)
        except BaseException as error:
            shutil.rmtree(partial, ignore_errors=True)
            failure = error
        else:
            for old in sorted(folder.glob("step-*"))[:-keep]:
                if old != final and not old.name.endswith(".partial"):
                    shutil.rmtree(old, ignore_errors=True)
    main_failed = broadcast_object(failure is not None)  # every rank raises, none waits for the others forever
    if failure is None and main_failed:
        raise WriteError(f"rank 0 could not write the checkpoint {final} (its error says why).")
    if failure is not None:
        if isinstance(failure, (WriteError, KeyboardInterrupt, SystemExit)):
            raise failure
        raise atomic.write_error(final, failure) from failure  # torch.save's short write carries no errno
    barrier()


def latest_progress(folder: Path) -> dict[str, Any] | None:
    """progress.json of the newest complete checkpoint in `folder`, or None."""
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    path = folder / pointer.read_text().strip() / PROGRESS
    if not path.is_file():
        raise HookedBilinearError(
            f"{pointer} names {path.parent.name}, which holds no {PROGRESS}: the checkpoint folder was changed by "
            f"hand. Delete {folder} to start afresh, or pass another checkpoint_dir."
        )
    return json.loads(path.read_text())


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load the newest checkpoint into `model` and `optimizer` (wrapped or not, on any number of ranks)."""
    path = folder / (folder / LATEST).read_text().strip()
    model_state, optim_state = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": model_state, "optimizer": optim_state}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def full_state_on_main(model: nn.Module) -> dict[str, Any]:
    """The whole (unsharded, CPU) model state dict on rank 0, empty elsewhere; every rank must call it."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def meta_skeleton(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters are on the meta device (buffers copied): the shape to load a gathered full
    state dict into after FSDP has sharded the original in place. Costs the buffers' memory only."""
    memo: dict[int, Any] = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo)
