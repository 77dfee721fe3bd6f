# %% [markdown]
# # See the weights: self-contained HTML dashboards of the shipped `ts-synthetic-2l` and `digits` (docs/dashboard.md).
#
#     python tutorials/dashboard.py [--out out/dashboard]
#
# No download; well under a minute on CPU. Writes, into --out:
# 1. ts-synthetic-2l_layer1.html: layer 1's bilinear MLP read from its weights plus one pass over held-out stories:
#    16 token contrast directions and 8 live output features of the shipped SAE (with the input SAE's interactions
#    D Q_u D^T). Each direction: its eigenvalue spectrum, 8 eigenvectors with their share of the output, top and bottom
#    contexts highlighted by lambda (v . x')^2, and token read-outs.
# 2. digits.html: the shipped classifier's eigen-images per class with their eigenvalues, and the adversarial masks.
# 3. spectra.png: the spectra of two of the directions, the shown eigenvalues marked (what the pages draw).
# Open the HTML files in any browser, offline. The same from the command line:
#     hooked-bilinear dashboard ts-synthetic-2l --layer 1 --out layer1.html
#     hooked-bilinear dashboard digits --out digits.html

# %%
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import hooked_bilinear as hb  # noqa: E402
from hooked_bilinear.dashboard import read_data, write_classifier_dashboard, write_dashboard  # noqa: E402
from hooked_bilinear.dashboard.shipped import (  # noqa: E402
    HELDOUT_DESCRIPTION,
    frequent_tokens,
    heldout_tokens,
    live_features,
    shipped_saes,
)

LAYER = 1


def main() -> None:
    parser = argparse.ArgumentParser(description="Self-contained HTML dashboards of ts-synthetic-2l and digits.")
    parser.add_argument("--out", type=Path, default=Path("out/dashboard"))
    args, _ = parser.parse_known_args()  # in a notebook the kernel's own arguments are left alone
    args.out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.from_pretrained("ts-synthetic-2l")
    tokens = heldout_tokens()  # 108 x 128 tokens of stories the model never saw (seed 3)
    sae_in, sae_out = shipped_saes("ts-synthetic-2l", LAYER)
    directions = frequent_tokens(model, tokens, 16)
    features = live_features(model, LAYER, sae_out, tokens, 8)
    print(f"token set: {tokens.shape[0]} x {tokens.shape[1]} held-out tokens")
    print("directions:", ", ".join(model.tokenizer.convert_ids_to_tokens(directions)), "| output features:", features)

    # 1. the language model
    lm = write_dashboard(
        model,
        LAYER,
        tokens,
        args.out / f"ts-synthetic-2l_layer{LAYER}.html",
        directions=directions,
        features=features,
        sae_in=sae_in,
        sae_out=sae_out,
        token_set=HELDOUT_DESCRIPTION,
        progress=False,
    )
    print(f"{lm.path}: {lm.n_directions} directions, {lm.size_bytes / 1e6:.2f} MB, {lm.seconds:.1f} s")

    # 2. the classifier
    digits = write_classifier_dashboard(hb.vision.from_pretrained("digits"), args.out / "digits.html", progress=False)
    print(f"{digits.path}: {digits.n_directions} classes, {digits.size_bytes / 1e6:.2f} MB, {digits.seconds:.1f} s")

    # 3. what the pages hold, read back: the strongest eigenvector of the first direction and of the first feature
    data = read_data(Path(lm.path).read_text(encoding="utf-8"))
    shown = [data["directions"][0], data["directions"][len(directions)]]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for axis, direction in zip(axes, shown):
        spectrum = direction["spectrum"]
        axis.bar(range(len(spectrum)), spectrum, color=["#d9480f" if s >= 0 else "#1c64d6" for s in spectrum])
        for eigen in direction["eigen"]:
            axis.axhline(eigen["lambda"], color="#888", lw=0.4)
        axis.set_title(f"{direction['kind']} {direction['label']!r}: spectrum of Q_u", fontsize=10)
        axis.set_xlabel("eigenvalue (sorted)")
        top = max(direction["eigen"], key=lambda e: e["share"])
        print(
            f"{direction['kind']} {direction['label']!r}: effective rank {direction['stats']['effective_rank']:.1f}, "
            f"the 8 shown eigenvectors carry {direction['stats']['shown_share']:.0%} of |u . mlp(x)|; the largest "
            f"share, {top['share']:.0%}, is lambda {top['lambda']:+.3f}, whose top context is about "
            f"{data['vocab'][str(top['top'][0]['ids'][top['top'][0]['pos'] - top['top'][0]['start']])]!r}"
        )
    figure.tight_layout()
    figure.savefig(args.out / "spectra.png", dpi=120)
    print(f"figures and pages in {args.out}: {sorted(p.name for p in args.out.iterdir())}")


if __name__ == "__main__":
    main()
