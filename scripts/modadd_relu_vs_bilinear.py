"""Issue 32's side by side: ReLU and bilinear pizza models trained by the same recipe at several moduli, each certified.

    python scripts/modadd_relu_vs_bilinear.py [--quick] [--p 31 59 113] [--seed 0] [--work out/modadd_relu_vs_bilinear]
                                              [--plot docs/modadd_relu_vs_bilinear.png]

For each family (mlp "relu" / "bilinear") and p: the pizza set-up at that modulus trained with `SETUP_TRAINING["pizza"]`
(its MLP switched; width 128 / 512; the last epoch is the model) and saved under WORK/{family}-p{p} (a folder holding a
model of the same recipe is loaded, not retrained; p = 59 at seed 0 without --quick is the shipped modadd-p59 /
modadd-relu-p59, which are that recipe's output). `--quick`: p = 31 and 59, every stage a fifth as long (minutes on 2
cores; such models are not the shipped ones and may be less accurate). Then brute-force accuracy on all p^2 inputs and
the family's certificate: ReLU `certify_relu` (the sign-pattern bound of `toy.modadd.windows`, O(p^2 N + p^3 K), then the
exact fallback; beside it the quadrature bound, linear in the parameters, as `linear_bound_*`), bilinear `certify`
(compressed proof, exact fallback). The ReLU bound's cost (without the fallback) is fitted against
the parameter count on a log-log scale: the model's (at fixed width nearly constant in p, so that slope is large for
any cost that grows with p) and the composed circuit's (`circuit_params`, the tables the proofs read: 3 p N + 2 p^2
for ReLU). The LAST stdout line is one JSON object
{"relu": {"p": [...], "accuracy": [...], "certified": [...], "cost_ratio": [...], "proof_flops": [...],
"params": [...], ..., "fit": {slopes}}, "bilinear": {...}}: `certified` and `cost_ratio` / `proof_flops` are the whole
proof's (fallback included); `bound_certified` and `bound_flops` the compressed bound's alone; for ReLU
`bound_sign_errors` (the fraction of (input, unit) pairs firing against the explanation's windows) and
`bound_kinks_median` (the median over inputs of their kink term), the part no linear-cost bound was found for
(`scripts/modadd_relu_linear_limits.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from hooked_bilinear.loading.pretrained import load_model, resolve_folder
from hooked_bilinear.toy.modadd import PIZZA, ModAddTask, all_logits, margins, save_model, train_recipe
from hooked_bilinear.toy.modadd.certify import brute_force_flops, certify
from hooked_bilinear.toy.modadd.quadrature import certify_relu
from hooked_bilinear.toy.modadd.train import SETUP_TRAINING, Recipe

FAMILIES = ("relu", "bilinear")
SHIPPED = {"relu": "modadd-relu-p59", "bilinear": "modadd-p59"}


def recipe_of(family: str, seed: int, quick: bool) -> Recipe:
    stages = tuple(replace(stage, seed=seed, mlp=family) for stage in SETUP_TRAINING["pizza"])
    if quick:
        stages = tuple(replace(stage, max_epochs=stage.max_epochs // 5) for stage in stages)
    return stages


def same_recipe(folder: Path, recipe: Recipe) -> bool:
    stages = json.loads((folder / "TRAINING.json").read_text()).get("stages")
    expected = json.loads(json.dumps([asdict(stage) for stage in recipe]))
    return [{"mlp": "bilinear", **stage} for stage in stages or []] == expected  # older records lack `mlp`


def model_at(family: str, p: int, seed: int, quick: bool, folder: Path) -> tuple[torch.nn.Module, dict[str, object]]:
    """The trained model: the shipped one where it is this recipe's output, else loaded from `folder` if saved there
    by the same recipe, else trained and saved there."""
    recipe = recipe_of(family, seed, quick)
    shipped = resolve_folder(SHIPPED[family]) if p == 59 else None
    for candidate in [c for c in (shipped, folder) if c is not None]:
        if (candidate / "config.json").exists():
            if not same_recipe(candidate, recipe):
                if candidate == folder:
                    raise SystemExit(f"{folder} holds a model of another recipe: move it or pass another --work.")
                continue
            return load_model(str(candidate)), json.loads((candidate / "TRAINING.json").read_text())
    model, history = train_recipe(replace(PIZZA, p=p), recipe, progress=False)
    save_model(model, folder, history, recipe)
    return model, json.loads((folder / "TRAINING.json").read_text())


def study(family: str, p: int, seed: int, quick: bool, folder: Path) -> dict[str, object]:
    model, training = model_at(family, p, seed, quick, folder)
    task = ModAddTask.from_config(model.config)
    true = margins(all_logits(model, task), task)
    brute = brute_force_flops(model, task)
    start = time.perf_counter()
    certificate = certify_relu(model, task, fallback=True) if family == "relu" else certify(model, task)
    seconds = time.perf_counter() - start
    linear = {}
    if family == "relu":  # the quadrature bound, linear in the circuit's parameters (vacuous on trained models)
        quadrature = certify_relu(model, task, bound="quadrature")
        linear = {
            "linear_bound_certified": quadrature.compressed_accuracy,
            "linear_bound_flops": quadrature.compressed_flops,
            "linear_bound_cost_ratio": quadrature.compressed_flops / brute,
            "linear_bound_sound": bool((quadrature.margin <= true).all()),
            # what keeps the sign-pattern bound from being linear: the units firing against their windows, whose
            # kinks it sums per (input, unit) pair (scripts/modadd_relu_linear_limits.py measures the alternatives)
            "bound_sign_errors": certificate.errors["sign errors (fraction of input-unit pairs)"],
            "bound_kinks_median": certificate.errors["kinks, median"],
        }
    return {
        "p": p,
        "accuracy": (true > 0).double().mean().item(),
        "certified": certificate.certified_accuracy,
        "cost_ratio": certificate.proof_flops / brute,
        "proof_flops": certificate.proof_flops,
        "params": sum(parameter.numel() for parameter in model.parameters()),
        "circuit_params": circuit_params(family, p, model.config.d_hidden),
        "bound_certified": certificate.compressed_accuracy,
        "bound_flops": certificate.compressed_flops,
        "bound_cost_ratio": certificate.compressed_flops / brute,
        "brute_flops": brute,
        "sound": bool((certificate.margin <= true).all()),
        "true_min_margin": true.min().item(),
        "certified_min_margin": certificate.certified_min_margin,
        "frequencies": certificate.frequencies,
        "training_seconds": training["seconds"],
        "certify_seconds": round(seconds, 2),
        **linear,
    }


def circuit_params(family: str, p: int, width: int) -> int:
    """The numbers of the composed circuit the proofs read: per residue the hidden pre-activations from a and from b
    (ReLU: P, Q; bilinear: gate and in from each), the output map U' and the two direct-logit tables."""
    return (3 if family == "relu" else 5) * p * width + 2 * p * p


def slope(x: list[float], y: list[float]) -> float:
    """The least-squares slope of log y against log x."""
    lx, ly = [math.log(v) for v in x], [math.log(v) for v in y]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def plot(columns: dict[str, dict[str, list]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.8))
    styles = {"relu": ("tab:red", "ReLU"), "bilinear": ("tab:blue", "bilinear")}
    for family, column in columns.items():
        color, name = styles[family]
        ps = column["p"]
        ax.plot(ps, column["brute_flops"], ":", color=color, label=f"{name}: brute force")
        bound_name = "sign-pattern bound alone" if family == "relu" else "compressed proof alone"
        ax.plot(ps, column["bound_flops"], "o-", color=color, label=f"{name}: {bound_name}")
        ax.plot(ps, column["proof_flops"], "s--", color=color, alpha=0.6, label=f"{name}: with its exact fallback")
        for p, f, c in zip(ps, column["bound_flops"], column["bound_certified"]):
            ax.annotate(f"{c:.0%}", (p, f), textcoords="offset points", xytext=(4, -11), fontsize=7, color=color)
        if "linear_bound_flops" in column:
            ax.plot(
                ps, column["linear_bound_flops"], "^-.", color="tab:orange", label=f"{name}: linear quadrature bound"
            )
            for p, f, c in zip(ps, column["linear_bound_flops"], column["linear_bound_certified"]):
                ax.annotate(
                    f"{c:.0%}", (p, f), textcoords="offset points", xytext=(-22, -3), fontsize=7, color="tab:orange"
                )
    all_p = sorted({p for column in columns.values() for p in column["p"]})
    if all_p:
        anchor = min(min(column["bound_flops"]) for column in columns.values())
        for power, style in ((1, "-"), (2, "-."), (3, (0, (1, 3)))):
            ax.plot(
                all_p,
                [anchor * (p / all_p[0]) ** power for p in all_p],
                linestyle=style,
                color="grey",
                lw=0.8,
                label=f"reference slope p^{power}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(all_p, [str(p) for p in all_p])
    ax.minorticks_off()
    ax.set_xlabel("p (modulus)")
    ax.set_ylabel("floating-point operations")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, nargs="+", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--work", type=Path, default=Path("out/modadd_relu_vs_bilinear"))
    parser.add_argument("--plot", type=Path, default=Path("docs/modadd_relu_vs_bilinear.png"))
    args = parser.parse_args()
    moduli = args.p or ([31, 59] if args.quick else [31, 59, 113])
    if min(moduli) < 3 or len(set(moduli)) != len(moduli):
        parser.error(f"--p {' '.join(map(str, moduli))}: pass distinct moduli of at least 3.")
    args.work.mkdir(parents=True, exist_ok=True)
    tag = "quick-" if args.quick else ""
    columns: dict[str, dict[str, list]] = {}
    for family in args.families:
        rows = []
        for p in sorted(moduli):
            row = study(family, p, args.seed, args.quick, args.work / f"{tag}{family}-p{p}")
            print(
                f"{family} p={p}: accuracy {row['accuracy']:.4f}; compressed proof alone {row['bound_cost_ratio']:.4f}x "
                f"brute force, proves {row['bound_certified']:.4f}; with fallback {row['cost_ratio']:.4f}x, proves "
                f"{row['certified']:.4f}; sound {row['sound']}; {row['params']} parameters",
                flush=True,
            )
            rows.append(row)
        columns[family] = {key: [row[key] for row in rows] for key in rows[0]}
    fit = {}
    for family, column in columns.items():
        if len(column["p"]) >= 2:
            fit[family] = {
                "bound_flops_vs_params_slope": slope(column["params"], column["bound_flops"]),
                "bound_flops_vs_circuit_params_slope": slope(column["circuit_params"], column["bound_flops"]),
                "bound_flops_vs_p_slope": slope(column["p"], column["bound_flops"]),
                "brute_flops_vs_p_slope": slope(column["p"], column["brute_flops"]),
            }
            if "linear_bound_flops" in column:
                fit[family]["linear_bound_flops_vs_circuit_params_slope"] = slope(
                    column["circuit_params"], column["linear_bound_flops"]
                )
    result = {family: {**column, "fit": fit.get(family, {})} for family, column in columns.items()}
    (args.work / f"{tag}results.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(
        columns,
        args.plot,
        f"pizza recipe{' (quick: stages / 5)' if args.quick else ''}, width 128 / 512, seed "
        f"{args.seed}\nlabels: fraction each bound alone certifies (orange: the linear quadrature bound)",
    )
    for family, numbers in fit.items():
        print(
            f"{family}: log-log slope of the compressed proof's flops against the circuit's parameters "
            f"{numbers['bound_flops_vs_circuit_params_slope']:.3f}, against the model's parameters "
            f"{numbers['bound_flops_vs_params_slope']:.3f} (at fixed width they barely grow with p), against p "
            f"{numbers['bound_flops_vs_p_slope']:.3f}"
            + (
                f"; the linear quadrature bound's against the circuit's parameters "
                f"{numbers['linear_bound_flops_vs_circuit_params_slope']:.3f}"
                if "linear_bound_flops_vs_circuit_params_slope" in numbers
                else ""
            )
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
