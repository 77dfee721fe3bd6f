# %% [markdown]
# # Modular addition, read from the weights
#
# A one-layer bilinear transformer, its Fourier mechanism, a compressed explanation, and a certificate of its
# accuracy. Run as a script with
# `python tutorials/modular_addition.py [--model modadd-p59 | modadd-p113] [--train] [--out out/modular_addition]`,
# or open it as a notebook (jupytext).
#
# 1. Load a shipped model (or train one with --train: the pizza set-up's fixed 1500 + 500 epochs, the shipped
#    modadd-p59's recipe, about 5 minutes on 2 CPU cores) as a hooked transformer; brute-force accuracy on all p^2
#    inputs (100% for modadd-p59). modadd-p113 (Nanda's set-up, trained attention) runs too; its certificate curve
#    takes minutes.
# 2. Key frequencies from the weights (embedding; the MLP's interaction tensor in the Fourier basis), and from
#    activations (run_with_cache on all p^2 inputs): they agree.
# 3. The trig identity each key frequency implements, and the compressed explanation
#    logit(a, b, c) = sum_k A_k cos(w_k (a + b - c) - phi_k): its size and its accuracy on all inputs.
# 4. The certificate: a proven lower bound on every margin, its cost against brute force, and the curve of proof
#    cost against bound tightness as frequencies are added; the inputs the compression leaves open are proven by the
#    exact circuit, which alone (uncompressed) is also a proof.

# %%
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

import hooked_bilinear as hb
from hooked_bilinear.analysis.plots import show_in_notebook
from hooked_bilinear.loading.pretrained import load_model, resolve_folder
from hooked_bilinear.toy.modadd import (
    PIZZA,
    SETUP_TRAINING,
    ModAddTask,
    activation_spectra,
    brute_force_flops,
    certificate_curve,
    certify,
    certify_exact,
    explain,
    key_frequencies,
    modadd_report,
    save_model,
    train_recipe,
    weight_reading,
)
from hooked_bilinear.toy.modadd.plots import (
    plot_certificate_curve,
    plot_logit_tables,
    plot_spectra,
    plot_training,
)

parser = argparse.ArgumentParser(description="Modular addition, read from the weights.")
parser.add_argument("--model", default="modadd-p59")
parser.add_argument("--train", action="store_true", help="train the pizza set-up instead of loading")
parser.add_argument("--out", type=Path, default=Path("out/modular_addition"))
args, _ = parser.parse_known_args()  # in a notebook the kernel's own arguments are left alone
args.out.mkdir(parents=True, exist_ok=True)
torch.set_grad_enabled(False)


# %% [markdown]
# ## 1. The model
#
# As a transformers model (for the weights) and as a hooked transformer (for activations).

# %%
if args.train:
    model, history = train_recipe(PIZZA, SETUP_TRAINING["pizza"])
    plot_training(history, args.out / "training.png", "pizza set-up")
    folder = save_model(model, args.out / "model", history, SETUP_TRAINING["pizza"], overwrite=True)
else:
    folder = resolve_folder(args.model)
    model = load_model(folder)
task = ModAddTask.from_config(model.config)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bridge = hb.from_pretrained(folder)
tokens, labels = task.tokens(), task.labels()
logits, cache = bridge.run_with_cache(tokens)
answer = logits[:, -1]
print(f"p={task.p}, input '{task.input_format}', uniform attention {task.uniform_attention}")
print(f"accuracy on all {task.p}^2 inputs (hooked model): {(answer.argmax(-1) == labels).float().mean():.4f}")

# %% [markdown]
# ## 2. Key frequencies: weights, then activations

# %%
reading = weight_reading(model, task)
hidden = cache["blocks.0.mlp.hook_post"][:, -1].reshape(task.p, task.p, -1)
spectra = activation_spectra(hidden, answer.reshape(task.p, task.p, -1))
print(f"key frequencies from the MLP's weights: {reading.key_frequencies}")
print(f"          from the embedding's weights: {key_frequencies(reading.embedding)}")
print(f"     from the hidden units' activations: {key_frequencies(spectra['hidden'])}")
print(f"             from the logits (a + b):   {key_frequencies(spectra['logits'])}")
plot_spectra(
    {
        "embedding W_E (weights)": reading.embedding,
        "MLP interaction tensor (weights)": reading.interaction,
        "MLP hidden units vs a + b (activations)": spectra["hidden"],
        "logits vs a + b (activations)": spectra["logits"],
    },
    args.out / "fourier_spectra.png",
    f"p = {task.p}: share of energy per frequency",
)
show_in_notebook(args.out / "fourier_spectra.png")

# %% [markdown]
# ## 3. Trig identities and the compressed explanation

# %%
explanation = explain(model, task)
for term in explanation.terms:
    print(
        f"k={term.k:3d}: A={term.amplitude:8.3f} phi={term.phase:+.3f}  cos(w(a+b-c)) identity holds for "
        f"{100 * term.identity_fraction:.1f}% of the block; class-0 eigenvalues "
        f"{', '.join(f'{v:+.1f}' for v in term.eigenvalues)}"
    )
c = 0
plot_logit_tables(
    {
        f"model: logit of c={c}": answer[:, c].reshape(task.p, task.p).detach(),
        f"explanation ({explanation.parameter_count} numbers)": explanation.logits()[:, :, c],
    },
    args.out / "logit_tables.png",
    "logit of one answer over (a, b)",
)
show_in_notebook(args.out / "logit_tables.png")

# %% [markdown]
# ## 4. The certificate, and how its cost buys tightness

# %%
result = modadd_report(model, certificate=certify(model, task, progress=True))
for key in (
    "accuracy",
    "true_min_margin",
    "certified_min_margin",
    "certified_accuracy",
    "proof",
    "cost_ratio",
    "compressed_certified_accuracy",
    "compressed_cost_ratio",
    "fallback_cost_ratio",
    "exact_circuit_cost_ratio",
    "compression_ratio",
    "explanation_accuracy",
    "logit_variance_explained",
):
    print(f"{key:>32}: {result[key]}")

# %%
brute = brute_force_flops(model, task)
curve = certificate_curve(model, task)
plot_certificate_curve(
    curve,
    certify_exact(model, task),
    brute,
    result["accuracy"],
    args.out / "certificate_curve.png",
    f"p = {task.p}: proof cost vs bound",
)
for certificate in curve:
    print(
        f"{len(certificate.frequencies):3d} frequencies: the compression alone proves "
        f"{certificate.compressed_accuracy:.4f} at {certificate.compressed_flops / brute:.3f} x brute force; "
        f"with the exact fallback {certificate.certified_accuracy:.4f} at "
        f"{certificate.proof_flops / brute:.3f} x"
    )
print(f"pictures in {args.out}")
show_in_notebook(args.out / "certificate_curve.png")
