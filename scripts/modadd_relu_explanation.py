"""Issue 32's explanation of the shipped ReLU model: error table, certificate, and the units as quadrature points.

    python scripts/modadd_relu_explanation.py [--model modadd-relu-p59] [--plot docs/modadd_relu_quadrature.png]

Prints the explanation's levels against the model on all p^2 inputs (`explanation_table`), the quadrature's integral
and error per (frequency, harmonic), both bounds' error terms (the linear quadrature bound and the sign-pattern bound
of `toy.modadd.windows`), certified fractions and cost against brute force, and saves the plot of the units' phases as
quadrature points.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hooked_bilinear.loading.pretrained import load_model
from hooked_bilinear.toy.modadd import ModAddTask, all_logits, margins
from hooked_bilinear.toy.modadd.certify import brute_force_flops
from hooked_bilinear.toy.modadd.interval import Ledger
from hooked_bilinear.toy.modadd.plots import plot_quadrature_points
from hooked_bilinear.toy.modadd.quadrature import (
    certify_relu,
    explanation_logits,
    explanation_table,
    read_tables,
    read_units,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="modadd-relu-p59")
    parser.add_argument("--plot", type=Path, default=Path("docs/modadd_relu_quadrature.png"))
    args = parser.parse_args()
    model = load_model(args.model)
    task = ModAddTask.from_config(model.config)
    true = margins(all_logits(model, task), task)
    print(
        f"{args.model}: accuracy {(true > 0).double().mean().item():.4f}, true minimum margin {true.min().item():.3f}"
    )
    print("| level | max abs error | rms error | rms logit | argmax accuracy |\n|---|---|---|---|---|")
    for row in explanation_table(explanation_logits(model, task), task):
        print(
            f"| {row['level']} | {row['max |error|']:.3f} | {row['rms error']:.3f} | {row['rms logit']:.3f} | "
            f"{row['accuracy']:.4f} |"
        )
    brute = brute_force_flops(model, task)
    quadrature = certify_relu(model, task, fallback=True, bound="quadrature")
    print("| (k, m) | integral J^ (Re, Im) | largest quadrature error delta |\n|---|---|---|")
    for key, value in quadrature.integral.items():
        print(f"| {key} | ({value.real:.4f}, {value.imag:.4f}) | {quadrature.quadrature_error[key]:.4f} |")
    for bound, certificate in (("quadrature", quadrature), ("windows", certify_relu(model, task, fallback=True))):
        for name, size in certificate.errors.items():
            print(f"{bound} bound, error term: {name}: {size:.4g}")
        print(
            f"{bound} bound alone: certifies {certificate.compressed_accuracy:.4f} at "
            f"{certificate.compressed_flops / brute:.4f}x brute force ({certificate.compressed_flops:.3g} flops); with "
            f"its fallback {certificate.certified_accuracy:.4f} at {certificate.proof_flops / brute:.4f}x; sound "
            f"{bool((certificate.margin <= true).all())}; flops by step "
            + ", ".join(f"{step} {flops:.3g}" for step, flops in certificate.flops.items())
        )
    reading = read_units(read_tables(model, task, Ledger()), task.p, None, Ledger())
    print(plot_quadrature_points(reading, args.plot, f"{args.model}: hidden units as quadrature points"))


if __name__ == "__main__":
    main()
