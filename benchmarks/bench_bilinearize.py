"""Throughput and peak memory of bilinearize on a TinyLlama-1.1B-shaped SwiGLU model (random initial weights: the
Hub is unreachable here) on one GPU, or on several through torchrun.

    python benchmarks/bench_bilinearize.py --preset tinyllama --device cuda [--steps 300 --batch-size 8 --seq-len 512]
    torchrun --nproc_per_node 4 benchmarks/bench_bilinearize.py --preset tinyllama --batch-size 32 --strategy fsdp
    python benchmarks/bench_bilinearize.py --preset tiny --device cpu --steps 20      # smoke run of the same path

Reports tokens/s over the run (bf16 autocast on CUDA, AdamW, gradient checkpointing on for tinyllama), peak CUDA
memory (torch.cuda.max_memory_allocated, rank 0) next to bilinearize's own per-rank estimate, and writes results.json
(rank 0). --recipe picks the recipe (default: the paper's); --batch-size is the global batch.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import hooked_bilinear as hb
from hooked_bilinear.making.distributed import device_for

PRESETS = {
    # TinyLlama-1.1B: 22 layers, hidden 2048, intermediate 5632, 32 heads, 4 kv heads, vocab 32000 (docs/formats.md section 4)
    "tinyllama": dict(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
    ),
    "tiny": dict(
        vocab_size=1000,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tinyllama")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--recipe", choices=["paper", "cosine80"], default="paper")
    parser.add_argument("--strategy", choices=["auto", "ddp", "fsdp"], default="auto")
    parser.add_argument("--out", type=Path, default=Path("out/bench_bilinearize"))
    args = parser.parse_args()
    config = LlamaConfig(**PRESETS[args.preset], hidden_act="silu", tie_word_embeddings=False)
    torch.manual_seed(0)
    device = device_for(args.device)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    tokens = torch.randint(
        0,
        config.vocab_size,
        (args.steps * args.batch_size * args.seq_len // 4 + args.seq_len + 1,),
        generator=torch.Generator().manual_seed(0),
    )  # the same on every rank
    checkpointing = args.preset == "tinyllama" and not args.no_gradient_checkpointing
    start = time.perf_counter()
    model = hb.bilinearize(
        model,
        tokens,
        recipe=args.recipe,
        strategy=args.strategy,
        device=device,
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        warmup_steps=min(20, args.steps),
        checkpoint_every=10**9,
        gradient_checkpointing=checkpointing,
    )
    wall = time.perf_counter() - start
    if model is None:  # ranks other than 0
        return
    details = hb.publishing.provenance.provenance_of(model).details
    results = {
        "preset": args.preset,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else str(device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "gradient_checkpointing": checkpointing,
        "recipe": args.recipe,
        "processes": details["processes"],
        "tokens_per_second": details["tokens_per_second"],
        "peak_cuda_memory_gib": (
            None if details["peak_cuda_memory_bytes"] is None else round(details["peak_cuda_memory_bytes"] / 2**30, 2)
        ),
        "estimated_memory_per_rank_gib": round(details["estimated_memory_bytes_per_rank"] / 2**30, 2),
        "final_hidden_act": model.config.hidden_act,
        "fold_max_abs_logit_diff": hb.publishing.provenance.provenance_of(model).max_abs_logit_diff,
        "wall_seconds": round(wall, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results-{args.preset}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
