"""Kill activation caching and SAE training at seeded random moments (SIGKILL of a child process), resume, and check
that the final cache files and SAE weights equal an uninterrupted run's.

    python scripts/interrupt_streaming.py [--trials 10] [--seed 0]

Each trial (`--trials` killing the caching, as many the training) starts a child that writes the cache (then trains two SAEs from it with checkpoints every 3 steps) in a
fresh folder, kills it a random time (seeded) after it has loaded the model, runs it again to the end, and compares with the reference
run's shard files, manifest and weights, byte for byte. tests/activations/test_cache.py and tests/sae/test_train.py
run a few in-process interruptions in CI; this script kills real processes, many times.
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
    tokens = np.random.default_rng(0).integers(5, 330, size=256 * 128, dtype=np.int32)
    store = ActivationStore(model, tokens, HOOKS, model_batch_size=4)
    write_cache(store, folder / "cache", shard_sequences=4)
    print("cached", flush=True)
    cache = ActivationCache(folder / "cache", model=model, buffer_size=2048, seed=1)
    config = SAETrainConfig(k=8, expansion=2, steps=60, batch_size=256, seed=2, dead_after=2000)
    results = train_saes(cache, config, progress=False, checkpoint_dir=folder / "state", checkpoint_every=3)
    torch.save({hook: r.sae.state_dict() for hook, r in results.items()}, folder / "weights.pt")


def digest(folder: Path) -> dict[str, str]:
    files = sorted((folder / "cache").iterdir())
    out = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files}
    import torch

    weights = torch.load(folder / "weights.pt", weights_only=True)
    for hook, state in weights.items():
        for name, tensor in state.items():
            out[f"{hook}.{name}"] = hashlib.sha256(tensor.numpy().tobytes()).hexdigest()[:16]
    return out


def run(folder: Path, kill_after: float | None = None) -> float:
    """Run the child; kill it `kill_after` s after it is ready (loaded the model). Returns its working time (s),
    or -1 when it was killed before finishing."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.wait()
        raise SystemExit(f"child failed:\n{process.stderr.read() if process.stderr else ''}")
    ready = time.perf_counter()
    try:
        process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -1.0
    if process.returncode != 0:
        raise SystemExit(f"child failed:\n{process.stderr.read() if process.stderr else ''}")
    return time.perf_counter() - ready


def reference_times(folder: Path) -> tuple[float, float]:
    """(caching, whole) working times of an uninterrupted run."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    ready = time.perf_counter()
    assert process.stdout.readline().strip() == "cached"
    cached = time.perf_counter() - ready
    if process.wait() != 0:
        raise SystemExit(f"child failed:\n{process.stderr.read() if process.stderr else ''}")
    return cached, time.perf_counter() - ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="kills of the caching, and as many of the training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference"
        caching, duration = reference_times(reference)
        expected = digest(reference)
        print(
            f"reference run: {caching:.1f} s caching, {duration:.1f} s in all, {len(expected)} files and tensors",
            flush=True,
        )
        results = []
        for trial in range(2 * args.trials):  # even trials kill the caching, odd ones the training
            folder = Path(tmp) / f"trial{trial}"
            delay = rng.uniform(0.02, 1.0) * caching if trial % 2 == 0 else rng.uniform(caching, duration)
            killed = run(folder, kill_after=delay) < 0
            stage = (
                "training" if (folder / "state").exists() else "caching" if (folder / "cache").exists() else "start-up"
            )
            run(folder)
            same = digest(folder) == expected
            results.append({"trial": trial, "killed": killed, "stage": stage, "same": same})
            print(
                f"trial {trial}: killed after {delay:.1f} s ({'during ' + stage if killed else 'too late: finished'}),"
                f" resumed: {'identical' if same else 'DIFFERENT'}",
                flush=True,
            )
    summary = {
        "trials": len(results),
        "killed": sum(r["killed"] for r in results),
        "killed_caching": sum(r["killed"] and r["stage"] == "caching" for r in results),
        "killed_training": sum(r["killed"] and r["stage"] == "training" for r in results),
        "identical": sum(r["same"] for r in results),
    }
    print(json.dumps(summary))
    sys.exit(0 if summary["identical"] == summary["trials"] else 1)


if __name__ == "__main__":
    main()
