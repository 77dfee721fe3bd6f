"""Issue 16's scaling study: the pizza recipe trained at several moduli, each certified; proof cost against p.

    python scripts/modadd_scaling.py [--p 31 59 113] [--seed 0] [--work out/modadd_scaling]
                                     [--plot docs/modadd_cost_scaling.png]

For each p: the pizza set-up at that modulus (`ModAddTask(p, "a b", 80% train, uniform attention)`) trained with
`SETUP_TRAINING["pizza"]` (fixed width 128 / 512; the last epoch is the model), saved under WORK/p{p} (a folder that
already holds a model of that recipe is loaded, not retrained; one of another recipe is refused), then brute-force
accuracy on all p^2 inputs, the exact-circuit proof and the compressed proof (key frequencies from the weights, exact
fallback). Writes WORK/scaling.json (one record per p) and the plot of flops against p.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hooked_bilinear.loading.pretrained import load_model
from hooked_bilinear.toy.modadd import PIZZA, ModAddTask, all_logits, margins, save_model, train_recipe
from hooked_bilinear.toy.modadd.certify import brute_force_flops, certify, certify_exact
from hooked_bilinear.toy.modadd.plots import plot_cost_scaling
from hooked_bilinear.toy.modadd.train import SETUP_TRAINING


def model_at(p: int, seed: int, folder: Path) -> tuple[torch.nn.Module, dict[str, object]]:
    """The trained pizza model at modulus p: loaded from `folder` if saved there by the same recipe, else trained and
    saved."""
    recipe = tuple(replace(stage, seed=seed) for stage in SETUP_TRAINING["pizza"])
    if (folder / "config.json").exists():
        training = json.loads((folder / "TRAINING.json").read_text())
        if training.get("stages") != json.loads(json.dumps([asdict(stage) for stage in recipe])):
            raise SystemExit(
                f"{folder} holds a model trained by another recipe than SETUP_TRAINING['pizza'] at seed {seed}: move "
                "it or pass another --work."
            )
        return load_model(str(folder)), training
    task = replace(PIZZA, p=p)
    model, history = train_recipe(task, recipe)
    save_model(model, folder, history, recipe)
    return model, json.loads((folder / "TRAINING.json").read_text())


def study(p: int, seed: int, folder: Path) -> dict[str, object]:
    model, training = model_at(p, seed, folder)
    task = ModAddTask.from_config(model.config)
    if task != replace(PIZZA, p=p):
        raise SystemExit(f"{folder} holds a model of {task}, not the pizza set-up at p={p}: move it or pass --work.")
    true = margins(all_logits(model, task), task)
    brute = brute_force_flops(model, task)
    exact, compressed = certify_exact(model, task), certify(model, task)
    multiplied = certify(model, task, fallback=False, multiply_x_first_order=True)
    return {
        "p": p,
        "seed": seed,
        "training_seconds": training["seconds"],
        "test_accuracy": training["test_accuracy"],
        "wrong": int((true <= 0).sum()),
        "accuracy": (true > 0).double().mean().item(),
        "true_min_margin": true.min().item(),
        "brute": brute,
        "exact": exact.proof_flops,
        "exact_certified_accuracy": exact.certified_accuracy,
        "frequencies": compressed.frequencies,
        "compressed": compressed.compressed_flops,
        "compressed_certified_accuracy": compressed.compressed_accuracy,
        "compressed_multiplied": multiplied.compressed_flops,
        "compressed_multiplied_certified_accuracy": multiplied.compressed_accuracy,
        "fallback": compressed.proof_flops,
        "fallback_certified_accuracy": compressed.certified_accuracy,
        "sound": bool(all((c.margin <= true).all() for c in (exact, compressed, multiplied))),
        "params": sum(parameter.numel() for parameter in model.parameters()),
        "explanation_params": 3 * len(compressed.frequencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, nargs="+", default=[31, 59, 113])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("out/modadd_scaling"))
    parser.add_argument("--plot", type=Path, default=Path("docs/modadd_cost_scaling.png"))
    args = parser.parse_args()
    if min(args.p) < 3 or len(set(args.p)) != len(args.p):
        parser.error(f"--p {' '.join(map(str, args.p))}: pass distinct moduli of at least 3.")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [study(p, args.seed, args.work / f"p{p}") for p in tqdm(sorted(args.p), desc="moduli")]
    (args.work / "scaling.json").write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        print(
            f"p={row['p']}: {row['wrong']} wrong of {row['p'] ** 2}; exact proof {row['exact'] / row['brute']:.3f}x "
            f"(proves {row['exact_certified_accuracy']:.4f}); compressed alone {row['compressed'] / row['brute']:.3f}x "
            f"(proves {row['compressed_certified_accuracy']:.4f}, {len(row['frequencies'])} frequencies); with "
            f"fallback {row['fallback'] / row['brute']:.3f}x; R_X Y_K Z_K multiplied out "
            f"{row['compressed_multiplied'] / row['brute']:.3f}x (proves "
            f"{row['compressed_multiplied_certified_accuracy']:.4f}); sound {row['sound']}"
        )
    plot_cost_scaling(rows, args.plot, "pizza recipe trained at each p (width 128 / 512)")
    print(f"-> {args.work / 'scaling.json'}, {args.plot}")


if __name__ == "__main__":
    main()
