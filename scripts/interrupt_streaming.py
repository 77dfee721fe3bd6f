"""Kill activation caching and SAE training at seeded random moments (SIGKILL of a child process), resume, and check
that the final cache files and SAE weights equal an uninterrupted run's.

    python scripts/interrupt_streaming.py [--trials 10] [--seed 0]

Trials alternate between the phases until `--trials` kills have landed in each (at most twice as many attempts per
phase). Each trial starts a child that writes a cache of 32 shards (then trains two SAEs from it for 30 steps with
checkpoints every 3 steps) in a fresh folder, and SIGKILLs it: a caching trial at a seeded random shard count
(watching the cache folder for shard files) plus a seeded fraction of the reference run's time per shard, a training
trial likewise at a seeded random checkpoint count (watching the checkpoint file being replaced) plus a seeded
fraction of the reference run's time per checkpoint. A kill that came after its phase had ended (the child had
printed 'cached', or 'trained') is reported as not landed, never as a survivor. The child is then run again to the
end and its shard files, manifest and weights are compared with the reference run's, byte for byte.
tests/activations/test_cache.py and tests/sae/test_train.py run a few in-process interruptions in CI; this script
kills real processes, many times.
Prints one line per trial and, last, a JSON summary; exit status 1 if any trial differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HOOKS = ["blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out"]
CHECKPOINTS = 10  # 30 steps, one every 3
PHASES = ("caching", "training")


def child(folder: Path) -> None:
    import numpy as np
    import torch

    import hooked_bilinear as hb
    from hooked_bilinear.activations import ActivationStore
    from hooked_bilinear.activations.cache import ActivationCache, write_cache
    from hooked_bilinear.sae.train import SAETrainConfig, train_saes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.from_pretrained("ts-synthetic-2l")
    print("ready", flush=True)  # the parent's clock starts here: start-up time varies with the machine's load
    tokens = np.random.default_rng(0).integers(5, 330, size=128 * 128, dtype=np.int32)
    store = ActivationStore(model, tokens, HOOKS, model_batch_size=4)
    write_cache(store, folder / "cache", shard_sequences=4)
    print("cached", flush=True)
    cache = ActivationCache(folder / "cache", model=model, buffer_size=2048, seed=1)
    config = SAETrainConfig(k=8, expansion=2, steps=30, batch_size=256, seed=2, dead_after=2000)
    results = train_saes(cache, config, progress=False, checkpoint_dir=folder / "state", checkpoint_every=3)
    print("trained", flush=True)
    torch.save({hook: r.sae.state_dict() for hook, r in results.items()}, folder / "weights.pt")
    print("done", flush=True)


def digest(folder: Path) -> dict[str, str]:
    files = sorted((folder / "cache").iterdir())
    out = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files}
    import torch

    weights = torch.load(folder / "weights.pt", weights_only=True)
    for hook, state in weights.items():
        for name, tensor in state.items():
            out[f"{hook}.{name}"] = hashlib.sha256(tensor.numpy().tobytes()).hexdigest()[:16]
    return out


def start(folder: Path) -> subprocess.Popen[str]:
    """Start the child and wait for its 'ready' line (model loaded)."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.wait()
        raise SystemExit(f"child failed:\n{process.stderr.read() if process.stderr else ''}")
    return process


def finish(process: subprocess.Popen[str]) -> None:
    if process.wait() != 0:
        raise SystemExit(f"child failed:\n{process.stderr.read() if process.stderr else ''}")


def shards(folder: Path) -> int:
    return len(list((folder / "cache").glob("shard-*.safetensors"))) if (folder / "cache").exists() else 0


def kill_caching(folder: Path, after_shards: int, jitter: float) -> bool:
    """Kill the child `jitter` s after its `after_shards`-th shard file appears. True when the kill landed in the
    caching phase (the child had not printed 'cached')."""
    process = start(folder)
    while shards(folder) < after_shards and process.poll() is None:
        time.sleep(0.002)
    time.sleep(jitter)
    process.kill()
    process.wait()
    assert process.stdout is not None
    return "cached" not in process.stdout.read()


def checkpoint(folder: Path) -> tuple[int, int] | None:
    """Inode and modification time of the checkpoint file (a new file at each checkpoint: written aside, renamed; an
    inode alone may be reused)."""
    try:
        stat = (folder / "state" / "train_state.pt").stat()
        return stat.st_ino, stat.st_mtime_ns
    except FileNotFoundError:
        return None


def kill_training(folder: Path, after_checkpoints: int, jitter: float) -> bool:
    """Kill the child `jitter` s after its `after_checkpoints`-th training checkpoint appears (counted from its
    'cached' line). True when the kill landed in the training phase (the child had not printed 'trained')."""
    process = start(folder)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "cached":
        finish(process)
        raise SystemExit("child did not cache")
    seen: set[tuple[int, int]] = set()
    while len(seen) < after_checkpoints and process.poll() is None:
        inode = checkpoint(folder)
        if inode is not None:
            seen.add(inode)
        time.sleep(0.002)
    time.sleep(jitter)
    process.kill()
    process.wait()
    return "trained" not in process.stdout.read()


def reference_times(folder: Path) -> tuple[float, float]:
    """(caching, training) working times of an uninterrupted run: 'ready' to 'cached', 'cached' to 'trained'."""
    process = start(folder)
    assert process.stdout is not None
    ready = time.perf_counter()
    assert process.stdout.readline().strip() == "cached"
    cached = time.perf_counter()
    assert process.stdout.readline().strip() == "trained"
    trained = time.perf_counter()
    finish(process)
    return cached - ready, trained - cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trials", type=int, default=10, help="landed kills wanted in the caching, and as many in the training"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference"
        caching, training = reference_times(reference)
        total_shards = shards(reference)
        per_shard, per_checkpoint = caching / total_shards, training / CHECKPOINTS
        expected = digest(reference)
        print(
            f"reference run: {caching:.1f} s caching ({total_shards} shards), {training:.1f} s training,"
            f" {len(expected)} files and tensors",
            flush=True,
        )
        results: list[dict[str, object]] = []
        attempts = dict.fromkeys(PHASES, 0)
        landed_in = dict.fromkeys(PHASES, 0)

        def needed(phase: str) -> bool:  # until `--trials` kills have landed in the phase, at most 2x attempts
            return landed_in[phase] < args.trials and attempts[phase] < 2 * args.trials

        trial = 0
        while any(needed(phase) for phase in PHASES):
            phase = PHASES[trial % 2] if needed(PHASES[trial % 2]) else PHASES[1 - trial % 2]
            folder = Path(tmp) / f"trial{trial}"
            if phase == "caching":
                after, jitter = rng.randint(0, total_shards - 1), rng.uniform(0.0, 0.9) * per_shard
                landed = kill_caching(folder, after, jitter)
                moment = f"{jitter:.2f} s after shard {after} of {total_shards}"
            else:
                after, jitter = rng.randint(0, CHECKPOINTS - 2), rng.uniform(0.0, 0.5) * per_checkpoint
                landed = kill_training(folder, after, jitter)
                moment = f"{jitter:.2f} s after checkpoint {after} of {CHECKPOINTS}"
            attempts[phase] += 1
            landed_in[phase] += landed
            left = shards(folder)
            finish(start(folder))
            same = digest(folder) == expected
            results.append({"trial": trial, "phase": phase, "landed": landed, "same": same})
            print(
                f"trial {trial}: {phase} kill {moment}: {'landed' if landed else 'NOT landed (phase had ended)'}"
                f" ({left} shards on disk), resumed: {'identical' if same else 'DIFFERENT'}",
                flush=True,
            )
            trial += 1
    summary = {
        "trials": len(results),
        "caching_trials": sum(r["phase"] == "caching" for r in results),
        "landed_caching": sum(r["landed"] and r["phase"] == "caching" for r in results),
        "training_trials": sum(r["phase"] == "training" for r in results),
        "landed_training": sum(r["landed"] and r["phase"] == "training" for r in results),
        "not_landed": sum(not r["landed"] for r in results),
        "identical": sum(r["same"] for r in results),
        "identical_after_landed_kill": sum(r["same"] and r["landed"] for r in results),
    }
    print(json.dumps(summary))
    sys.exit(0 if summary["identical"] == summary["trials"] else 1)


if __name__ == "__main__":
    main()
