"""Overhead of the hooked bridge over the plain model class, on a ts-medium-shaped random model.

    python benchmarks/bench_forward.py [--repeats 15] [--device cpu] [--dtype float32] [--json out.json]

Model: 6 layers, d_model 512, 8 heads, d_hidden 2048, vocab 4096 (tdooms/ts-medium's shape), random weights in the
current tdooms format. Input: batch 4 x 256 tokens. Reports the median wall time of
  plain   BilinearForCausalLM forward (the model class the bridge wraps)
  bridge  TransformerBridge forward (hooks present, none attached)
  cache   TransformerBridge.run_with_cache (every hook cached)
and the ratios bridge/plain and cache/plain, all measured in the same run, interleaved round-robin so that drifts
in machine load hit the three alike. Targets (issue 2): forward <= 1.10x, run_with_cache <= 1.35x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

import hooked_bilinear as hb
from hooked_bilinear.loading.pretrained import load_model
from hooked_bilinear.modeling.modeling import BilinearForCausalLM

SHAPE = dict(n_layer=6, n_head=8, d_model=512, d_hidden=2048, n_ctx=256, vocab=4096)


def write_random_checkpoint(folder: Path) -> None:
    config = dict(
        n_layer=SHAPE["n_layer"],
        n_head=SHAPE["n_head"],
        d_model=SHAPE["d_model"],
        d_hidden=SHAPE["d_hidden"],
        n_ctx=SHAPE["n_ctx"],
        bilinear=True,
        gate=None,
        bias=False,
        normalization=True,
        tokenizer=None,
        model_type="",
        architectures=["Transformer"],
    )
    model = BilinearForCausalLM(
        hb.BilinearConfig(
            n_layer=SHAPE["n_layer"],
            n_head=SHAPE["n_head"],
            d_model=SHAPE["d_model"],
            d_hidden=SHAPE["d_hidden"],
            n_ctx=SHAPE["n_ctx"],
            vocab_size=SHAPE["vocab"],
        )
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))


def timed(fn: Callable[[], object], device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        write_random_checkpoint(Path(tmp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the random checkpoint has no tokenizer
            bridge = hb.from_pretrained(tmp, device=args.device, dtype=args.dtype)
        # The plain baseline: the model class loaded from the same files, with no bridge components inside
        # (the bridge rewires the model it wraps in place).
        baseline = load_model(Path(tmp)).to(device=args.device, dtype=bridge.cfg.dtype)
    tokens = torch.randint(0, SHAPE["vocab"], (4, 256), generator=torch.Generator().manual_seed(0)).to(args.device)
    runs: dict[str, Callable[[], object]] = {
        "plain": lambda: baseline(tokens).logits,
        "bridge": lambda: bridge(tokens, return_type="logits"),
        "cache": lambda: bridge.run_with_cache(tokens),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        torch.testing.assert_close(runs["bridge"](), runs["plain"](), atol=1e-4, rtol=1e-4)
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name].append(timed(fn, args.device))
    med = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "device": args.device,
        "dtype": args.dtype,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "median_s": med,
        "bridge_over_plain": med["bridge"] / med["plain"],
        "cache_over_plain": med["cache"] / med["plain"],
    }
    print(f"ts-medium shape, batch 4 x 256, {args.device} {args.dtype}, median of {args.repeats}:")
    for name in runs:
        print(f"  {name:7s} {med[name] * 1e3:8.1f} ms")
    print(f"  forward        {result['bridge_over_plain']:.3f}x plain (target <= 1.10x)")
    print(f"  run_with_cache {result['cache_over_plain']:.3f}x plain (target <= 1.35x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
