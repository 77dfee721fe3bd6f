# %% [markdown]
# # Bilinear image classifiers read from their weights
#
# The papers' section 4, on scikit-learn's 8x8 digits. Run as a script with
# `python tutorials/image_classifiers.py [--out out/image_classifiers]`, or open it as a notebook (jupytext).
#
# 1. Load the shipped `digits` classifier (input noise 0.2) as a hooked model: run_with_cache, and every logit as an
#    exact quadratic form of the embedding, logit_c = e^T Q_c e, through the package's shared bilinear analyses.
# 2. Eigen-images: each class's top eigenvectors read in pixel space; one class's full spectrum.
# 3. Truncation: the accuracy kept by the top-k eigencomponents per class.
# 4. Adversarial masks from eigen-images against a permuted-pixel baseline of the same norm.
# 5. Overfitting: the unregularised twin `digits-noreg` reads outlying pixels; a short noise sweep.
# 6. One image's logits split into eigencomponent contributions; eigen-image similarity across seeds.

# %%
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hooked_bilinear import vision
from hooked_bilinear.analysis.plots import show_in_notebook
from hooked_bilinear.vision.report import classifier_report

parser = argparse.ArgumentParser(description="Bilinear image classifiers read from their weights.")
parser.add_argument("--out", type=Path, default=Path("out/image_classifiers"))
args, _ = parser.parse_known_args()  # in a notebook the kernel's own arguments are left alone


# %% [markdown]
# ## The hooked classifier, and each logit as a quadratic form

# %%
model = vision.from_pretrained("digits")
split = vision.load_split(model.config)
logits, cache = model.run_with_cache(split.test_x[:4])
print("cached:", {name: tuple(t.shape) for name, t in cache.items()})
Q = model.mlp.interaction_matrix(model.class_directions(), dtype=torch.float64)  # [10, 64, 64]
e = cache["mlp.hook_in"].double()
print("logits:         ", logits[0, :4].tolist())
print("e^T Q_c e:      ", torch.einsum("i,cij,j->c", e[0], Q, e[0])[:4].tolist())

# %% [markdown]
# ## Every analysis at once
#
# `classifier_report` runs what `hooked-bilinear vision report` runs: eigen-images, truncation, adversarial masks,
# overfitting statistics against `digits-noreg`, a (short) noise sweep and the similarity to a model retrained at
# another seed.

# %%
result = classifier_report(
    model,
    args.out,
    noreg=vision.from_pretrained("digits-noreg"),
    sweep_stds=(0.0, 0.2, 0.5),
    sweep_epochs=60,
    seeds=(1,),
)
over = result["overfitting"]
print(
    f"test accuracy {result['test_accuracy']:.4f} (digits-noreg {result['noreg_test_accuracy']:.4f}); "
    f"identity max relative error {result['identity_max_relative_error']:.1e}"
)

# %% [markdown]
# ## Eigen-images
#
# Each class's top positive and top negative eigen-image, then class 0's spectrum.

# %%
show_in_notebook(args.out / "eigen_images.png", args.out / "spectrum_class0.png")

# %% [markdown]
# ## Truncation

# %%
print(f"truncation, accuracy by top-k per class: {result['truncation']}")
show_in_notebook(args.out / "truncation.png")

# %% [markdown]
# ## Adversarial masks

# %%
for method, numbers in result["adversarial"].items():
    print(
        f"{method} masks at 1/4 mean image norm: {numbers['rate'][2]:.4f} sent to the target vs "
        f"{numbers['baseline_rate'][2]:.4f} permuted ({numbers['ratio_at_quarter_norm']:.1f}x)"
    )
show_in_notebook(args.out / "adversarial_curves.png")

# %% [markdown]
# ## Overfitting

# %%
print(
    f"outlier energy of the top-4 eigen-images: digits {over['model']['outlier_energy']:.4f}, "
    f"digits-noreg {over['noreg']['outlier_energy']:.4f}"
)
print(
    f"noise sweep (60 epochs): {result['noise_sweep']['noise_std']} -> test accuracy "
    f"{[round(a, 4) for a in result['noise_sweep']['test_accuracy']]}, outlier energy "
    f"{[round(s['outlier_energy'], 4) for s in result['noise_sweep']['stats']]}"
)
show_in_notebook(args.out / "eigen_images_noreg.png", args.out / "noise_sweep.png")

# %% [markdown]
# ## One input explained; similarity across seeds

# %%
print(f"eigen-image similarity with seed 1 (top-4, best |cos|): {result['seed_similarity_top4']['1']}")
print(f"figures in {args.out}: {sorted(p.name for p in args.out.glob('*.png'))}")
show_in_notebook(args.out / "explanation.png")
