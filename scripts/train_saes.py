"""Train the shipped SAEs of `ts-synthetic-2l`: a TopK SAE (the papers' settings: k 30, 4x expansion, unit-norm
decoder, tied init, no encoder bias) on the MLP input (`blocks.{l}.mlp.hook_in`) and output (`blocks.{l}.mlp.hook_out`)
of each layer, on held-out synthetic stories (the generator of scripts/train_embedded.py with other seeds than the
model's corpus). Minutes on 2 CPU cores.

    python scripts/train_saes.py [--steps 800] [--out src/hooked_bilinear/checkpoints/saes/ts-synthetic-2l]

Writes one SAELens-format folder per hook and REPORT.json with, on a separate evaluation set: FVU, L0, dead
fraction, the loss added by splicing each SAE in (Fig. 23's measure), and for each output SAE the Fig. 9 measure
(correlation of the top-k eigen approximation with the feature's activation where active, k = 1, 2, 4, 8, over
features active more than 10 times).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import torch
from train_embedded import make_corpus

import hooked_bilinear as hb
from hooked_bilinear import analysis
from hooked_bilinear.sae.format import save
from hooked_bilinear.sae.splice import splice_loss
from hooked_bilinear.sae.train import (
    SAETrainConfig,
    cache_activations,
    evaluate_sae,
    pack_texts,
    train_sae,
)

MODEL = "ts-synthetic-2l"
TRAIN_SEED, EVAL_SEED = 1, 2  # the model itself was trained on the stories of seed 0
KS = (1, 2, 4, 8)
logger = logging.getLogger("train_saes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train-stories", type=int, default=1500)
    parser.add_argument("--eval-stories", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "src/hooked_bilinear/checkpoints/saes" / MODEL,
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)

    model = hb.from_pretrained(MODEL)
    ctx = model.cfg.n_ctx
    train_tokens = pack_texts(model.tokenizer, make_corpus(args.train_stories, TRAIN_SEED), ctx)
    eval_tokens = pack_texts(model.tokenizer, make_corpus(args.eval_stories, EVAL_SEED), ctx)
    logger.info("train %d x %d tokens, eval %d x %d tokens", *train_tokens.shape, *eval_tokens.shape)
    report: dict = {
        "model": MODEL,
        "train_tokens": train_tokens.numel(),
        "eval_tokens": eval_tokens.numel(),
        "steps": args.steps,
        "saes": {},
    }
    saes = {}
    for layer in range(model.cfg.n_layers):
        for side in ("hook_in", "hook_out"):
            hook = f"blocks.{layer}.mlp.{side}"
            acts = cache_activations(model, train_tokens, hook)
            config = SAETrainConfig(
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=args.seed,
                metadata={
                    "model_name": MODEL,
                    "hook_name": hook,
                    "hook_layer": layer,
                    "context_size": ctx,
                    "prepend_bos": True,
                    "dataset_path": f"synthetic stories (scripts/train_embedded.py make_corpus, seed {TRAIN_SEED})",
                },
            )
            sae = train_sae(acts, config, progress=False).sae
            stats = evaluate_sae(sae, cache_activations(model, eval_tokens, hook))
            loss = splice_loss(model, sae, eval_tokens)
            entry = {
                "fvu": stats.fvu,
                "l0": stats.l0,
                "dead_fraction": stats.dead,
                "loss_clean": loss.clean,
                "loss_spliced": loss.spliced,
                "loss_added": loss.added,
                "loss_zero_ablated": loss.zero_ablated,
            }
            sae.metadata.update(
                {
                    "train": {
                        "steps": args.steps,
                        "batch_size": args.batch_size,
                        "lr": args.lr,
                        "seed": args.seed,
                        "tokens": train_tokens.numel(),
                    },
                    "eval": entry,
                }
            )
            save(sae, args.out / hook, overwrite=True)
            saes[hook] = sae
            report["saes"][hook] = entry
            logger.info(
                "%s: FVU %.4f, L0 %.1f, dead %.3f, loss %.4f -> %.4f (+%.4f)",
                hook,
                stats.fvu,
                stats.l0,
                stats.dead,
                loss.clean,
                loss.spliced,
                loss.added,
            )
    for layer in range(model.cfg.n_layers):
        hook_in, hook_out = f"blocks.{layer}.mlp.hook_in", f"blocks.{layer}.mlp.hook_out"
        x = cache_activations(model, eval_tokens, hook_in)
        y = cache_activations(model, eval_tokens, hook_out)
        sae_out = saes[hook_out]
        with torch.no_grad():
            acts = sae_out.encode(y)
        approx = analysis.eigen_approximation(model.blocks[layer].mlp, sae_out, x, ks=KS, activations=acts)
        counted = approx.n_active > 10
        corr = approx.correlation[counted]
        fig9 = {
            f"k={k}": {
                "mean": corr[:, i].nanmean().item(),
                "median": corr[:, i].nanmedian().item(),
                "fraction_above_0.75": (corr[:, i] > 0.75).double().mean().item(),
            }
            for i, k in enumerate(KS)
        }
        report["saes"][hook_out]["fig9"] = {"features_counted": int(counted.sum()), **fig9}
        logger.info(
            "layer %d Fig. 9 over %d features: %s",
            layer,
            int(counted.sum()),
            ", ".join(f"k={k} {fig9[f'k={k}']['mean']:.3f}" for k in KS),
        )
    assert all(math.isfinite(v["fvu"]) for v in report["saes"].values())
    (args.out / "REPORT.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
