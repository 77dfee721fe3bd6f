"""bilinearize on a small SwiGLU Llama, against a bilinear model trained from scratch on the same number of tokens.

    python scripts/bilinearize_demo.py [--recipes paper cosine80] [--pretrain-steps 600] [--bilinearize-steps 300]

1. Corpus: the synthetic template stories of scripts/train_embedded.py (a different seed from the shipped model),
   tokenized with the shipped tokenizer (vocab 330); 5% held out for validation.
2. A SwiGLU LlamaForCausalLM (4 layers, d_model 128, 4 heads, 2 kv heads, intermediate 384) trained from random
   initial weights for `pretrain-steps` steps: the "SwiGLU start".
3. hooked_bilinear.bilinearize on it for `bilinearize-steps` more steps, once per recipe: the "bilinear end"
   (hidden_act linear). "paper": the paper's recipe (linear beta over the first 30%, learnable gate scale, lr 1e-4);
   "cosine80": the package's first default as this demo first ran it (cosine beta over 80%, lr 1e-3).
4. The same Llama shape with hidden_act "linear" trained from scratch for pretrain + bilinearize steps (the same
   tokens): "bilinear from scratch".
5. Control, per recipe: the SwiGLU start fine-tuned on the same tokens with the same settings (lr included) but no
   annealing ("SwiGLU continued"), so the effect of the extra steps is separated from the effect of bilinearizing.
Prints validation losses (nats/token), writes results.json and a loss-curve PNG.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

import hooked_bilinear as hb  # noqa: E402
from hooked_bilinear.making.recipe import RECIPES  # noqa: E402
from hooked_bilinear.making.report import CSV_FILE  # noqa: E402
from hooked_bilinear.making.train import TrainConfig, evaluate, train  # noqa: E402

FINE_LR = {"paper": RECIPES["paper"].lr, "cosine80": 1e-3}  # cosine80: the lr of this demo's first run

sys.path.insert(0, str(Path(__file__).parent))
from train_embedded import make_corpus  # noqa: E402


def llama(hidden_act: str, vocab_size: int, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        hidden_act=hidden_act,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
    )
    return LlamaForCausalLM(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", choices=sorted(FINE_LR), default=["paper", "cosine80"])
    parser.add_argument("--pretrain-steps", type=int, default=600)
    parser.add_argument("--bilinearize-steps", type=int, default=300)
    parser.add_argument("--stories", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("out/bilinearize_demo"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    tokenizer = hb.from_pretrained("ts-synthetic-2l").tokenizer
    ids: list[int] = []
    for story in make_corpus(args.stories, args.seed):
        ids.extend(tokenizer(story)["input_ids"] + [tokenizer.eos_token_id])
    data = torch.tensor(ids)
    n_val = len(data) // 20
    train_tokens, val_tokens = data[:-n_val], data[-n_val:]
    settings = dict(batch_size=16, seq_len=64, lr=3e-3, warmup_steps=30, weight_decay=0.1)
    vocab = len(tokenizer)
    start = time.perf_counter()

    swiglu = llama("silu", vocab, args.seed)
    pre = train(
        swiglu,
        train_tokens,
        TrainConfig(steps=args.pretrain_steps, seed=args.seed, **settings),
        tag="SwiGLU pretraining",
    )
    val_swiglu = evaluate(swiglu, val_tokens, settings["seq_len"])
    tokens_per_step = settings["batch_size"] * settings["seq_len"]
    results: dict = {
        "val_loss_swiglu_start": round(val_swiglu, 4),
        "pretrain_tokens": args.pretrain_steps * tokens_per_step,
        "bilinearize_tokens": args.bilinearize_steps * tokens_per_step,
    }
    fine_losses = {}
    for recipe in args.recipes:
        fine = TrainConfig(steps=args.bilinearize_steps, seed=args.seed + 1, **{**settings, "lr": FINE_LR[recipe]})
        continued = copy.deepcopy(swiglu)  # control: the same fine-tuning tokens without annealing (stays SwiGLU)
        train(continued, train_tokens, fine, tag=f"SwiGLU continued ({recipe} lr)")
        state = args.out / f"state-{recipe}"
        shutil.rmtree(state, ignore_errors=True)  # a fresh run, not a resumed one
        bilinear = hb.bilinearize(
            copy.deepcopy(swiglu), train_tokens, config=fine, recipe=recipe, device="cpu", checkpoint_dir=state
        )
        with open(state / CSV_FILE) as f:
            fine_losses[recipe] = [float(line.split(",")[1]) for line in f.readlines()[1:]]
        results[recipe] = {
            "lr": fine.lr,
            "schedule": RECIPES[recipe].schedule,
            "anneal_fraction": RECIPES[recipe].anneal_fraction,
            "learnable_scale": RECIPES[recipe].learnable_scale,
            "val_loss_bilinear_end": round(evaluate(bilinear, val_tokens, settings["seq_len"]), 4),
            "val_loss_swiglu_continued": round(evaluate(continued, val_tokens, settings["seq_len"]), 4),
            "fold_max_abs_logit_diff": hb.publishing.provenance.provenance_of(bilinear).max_abs_logit_diff,
            "final_hidden_act": bilinear.config.hidden_act,
        }

    total = args.pretrain_steps + args.bilinearize_steps
    scratch = llama("linear", vocab, args.seed)
    from_scratch = train(
        scratch, train_tokens, TrainConfig(steps=total, seed=args.seed, **settings), tag="bilinear from scratch"
    )
    val_scratch = evaluate(scratch, val_tokens, settings["seq_len"])
    results.update(
        {
            "val_loss_bilinear_from_scratch": round(val_scratch, 4),
            "from_scratch_tokens": total * tokens_per_step,
            "validation_tokens": n_val,
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(range(args.pretrain_steps), pre.losses, label="SwiGLU pretraining")
    for recipe, losses in fine_losses.items():
        ax.plot(range(args.pretrain_steps, total), losses, label=f"bilinearize, {recipe} recipe")
    ax.plot(range(total), from_scratch.losses, label="bilinear from scratch", alpha=0.6)
    ax.axvline(args.pretrain_steps, color="grey", ls=":", label="bilinearize starts")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (nats/token)")
    ax.set_yscale("log")
    ax.set_title(
        f"validation loss: SwiGLU start {val_swiglu:.3f}; "
        + "; ".join(
            f"{r}: bilinearized {results[r]['val_loss_bilinear_end']:.3f}, SwiGLU continued "
            f"{results[r]['val_loss_swiglu_continued']:.3f}"
            for r in fine_losses
        )
        + f"; from scratch {val_scratch:.3f}",
        fontsize=7,
        wrap=True,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "losses.png", dpi=120)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
