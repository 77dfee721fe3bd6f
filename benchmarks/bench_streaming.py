"""Peak memory and throughput of the streaming activation flow on the shipped `ts-synthetic-2l`.

    python benchmarks/bench_streaming.py [--sequences 128] [--scales 1,4,16] [--device cpu]

For each scale s (s x `--sequences` sequences of 128 random tokens, a memory-mapped .npy file), a fresh child
process runs the whole streaming flow and reports its peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`):
  1. write_cache: the activations of blocks.0.mlp.hook_in and blocks.0.mlp.hook_out to sharded safetensors,
  2. train_saes: one TopK SAE per hook (k 30, 4x), one pass over the cache through a 16384-row shuffle buffer,
  3. column_statistics: top-10 / bottom-10 examples and densities of every feature of both SAEs, one pass.
With `--memory` the same scales also run today's in-memory path (cache_activations, train_sae, top_examples of
every feature) for comparison (printed, not in the JSON).
Throughput (same run, same hook blocks.1.mlp.hook_out, the last MLP: the store's early stop skips only the
unembedding; same forward batch of 32 sequences): tokens/s of ActivationStore.batches (shuffle buffer 16384) over
tokens/s of `sae.cache_activations`, interleaved, best of 3 each.
Targets (issue 28): RSS growth <= 10% from 1x to 16x; throughput ratio >= 0.9.
The LAST line of output is one JSON object: {"rss_mb": {"1x": .., "4x": .., "16x": ..}, "throughput_ratio": ..}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HOOKS = ["blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out"]
THROUGHPUT_HOOK = "blocks.1.mlp.hook_out"


def load_model(device: str):
    import hooked_bilinear as hb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hb.from_pretrained("ts-synthetic-2l", device=device)


def write_tokens(path: Path, n_sequences: int, seq_len: int = 128, vocab: int = 330) -> None:
    g = np.random.default_rng(0)
    np.save(path, g.integers(5, vocab, size=n_sequences * seq_len, dtype=np.int32))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def child_streaming(tokens: Path, work: Path, device: str) -> dict:
    from hooked_bilinear.activations import ActivationStore, column_statistics, sae_columns
    from hooked_bilinear.activations.cache import ActivationCache, write_cache
    from hooked_bilinear.sae.train import SAETrainConfig, train_saes

    model = load_model(device)
    started = time.perf_counter()
    store = ActivationStore(model, tokens, HOOKS, model_batch_size=32)
    write_cache(store, work / "cache", shard_sequences=64)
    cache = ActivationCache(work / "cache", model=model, buffer_size=16384, seed=0)
    steps = cache.n_rows // 1024
    config = SAETrainConfig(steps=steps, batch_size=1024, seed=0)
    saes = train_saes(cache, config, progress=False, b_dec_rows=16384, device=device)
    columns = {hook: (hook, sae_columns(result.sae)) for hook, result in saes.items()}
    stats = column_statistics(cache, columns, k=10, batch_size=4096)
    return {
        "rss_mb": peak_rss_mb(),
        "seconds": time.perf_counter() - started,
        "tokens": store.n_tokens,
        "fvu": {hook: result.losses[-1] for hook, result in saes.items()},
        "live": {hook: float((s.density > 0).double().mean()) for hook, s in stats.items()},
    }


def child_memory(tokens: Path, device: str) -> dict:
    from hooked_bilinear.analysis.features import top_examples
    from hooked_bilinear.sae.train import SAETrainConfig, cache_activations, train_sae

    model = load_model(device)
    started = time.perf_counter()
    rows = torch.from_numpy(np.load(tokens).astype(np.int64)).reshape(-1, 128)
    for hook in HOOKS:
        x = cache_activations(model, rows, hook, batch_size=32)
        sae = train_sae(x, SAETrainConfig(steps=len(x) // 1024, batch_size=1024, seed=0), progress=False).sae
        with torch.no_grad():
            f = sae.encode(x).reshape(*rows.shape, -1)
        for feature in range(0, f.shape[-1], 64):  # a sample of features: the ranking is the same per feature
            top_examples(None, rows, f[..., feature], k=10)
        del x, f
    return {"rss_mb": peak_rss_mb(), "seconds": time.perf_counter() - started}


def child_throughput(tokens: Path, device: str, repeats: int = 3) -> dict:
    from hooked_bilinear.activations import ActivationStore
    from hooked_bilinear.sae.train import cache_activations

    model = load_model(device)
    rows = torch.from_numpy(np.load(tokens).astype(np.int64)).reshape(-1, 128)
    times: dict[str, list[float]] = {"memory": [], "stream": []}
    for _ in range(repeats):  # interleaved: drifts in machine load hit both alike
        start = time.perf_counter()
        cache_activations(model, rows, THROUGHPUT_HOOK, batch_size=32)
        times["memory"].append(time.perf_counter() - start)
        start = time.perf_counter()
        store = ActivationStore(model, rows, THROUGHPUT_HOOK, model_batch_size=32, buffer_size=16384, device=device)
        for _ in store.batches(4096):
            pass
        times["stream"].append(time.perf_counter() - start)
    n = rows.numel()
    return {name: n / min(t) for name, t in times.items()}


def run_child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=128, help="sequences of 128 tokens at scale 1x")
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory", action="store_true", help="also measure today's in-memory path")
    parser.add_argument("--child", choices=["streaming", "memory", "throughput"], help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.child == "streaming":
        print(json.dumps(child_streaming(args.tokens, args.work, args.device)))
        return
    if args.child == "memory":
        print(json.dumps(child_memory(args.tokens, args.device)))
        return
    if args.child == "throughput":
        print(json.dumps(child_throughput(args.tokens, args.device)))
        return
    scales = [int(s) for s in args.scales.split(",")]
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in scales:
            tokens = Path(tmp) / f"tokens{scale}.npy"
            write_tokens(tokens, scale * args.sequences)
            work = Path(tmp) / f"work{scale}"
            work.mkdir()
            got = run_child(
                ["--child", "streaming", "--tokens", str(tokens), "--work", str(work), "--device", args.device]
            )
            rss[f"{scale}x"] = round(got["rss_mb"], 1)
            print(
                f"streaming {scale:>2}x: {got['tokens']:>8} tokens, peak RSS {got['rss_mb']:.1f} MB, "
                f"{got['seconds']:.1f} s, SAE batch FVU {got['fvu']}, live features {got['live']}",
                flush=True,
            )
            if args.memory:
                mem = run_child(["--child", "memory", "--tokens", str(tokens), "--device", args.device])
                print(f"in memory {scale:>2}x: peak RSS {mem['rss_mb']:.1f} MB, {mem['seconds']:.1f} s", flush=True)
        tokens = Path(tmp) / f"tokens{scales[0]}.npy"
        speed = run_child(["--child", "throughput", "--tokens", str(tokens), "--device", args.device])
    ratio = speed["stream"] / speed["memory"]
    print(
        f"throughput on {THROUGHPUT_HOOK}: streaming {speed['stream']:.0f} tokens/s, in-memory cache_activations "
        f"{speed['memory']:.0f} tokens/s"
    )
    first, last = f"{scales[0]}x", f"{scales[-1]}x"
    print(
        f"RSS growth {first} -> {last}: {rss[last] / rss[first] - 1:+.1%} (target <= +10%); ratio {ratio:.3f} (target >= 0.9)"
    )
    print(json.dumps({"rss_mb": rss, "throughput_ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
