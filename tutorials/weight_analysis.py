# %% [markdown]
# # Reading a bilinear MLP from its weights
#
# Interaction matrices, eigenvectors, HOSVD, truncation. Run as a script with
# `python tutorials/weight_analysis.py [--out out/weight_analysis]`, or open it as a notebook (jupytext).
#
# On the shipped checkpoint `ts-synthetic-2l` (no download):
#
# 1. The output direction of a token against the rest, through the final norm and unembedding
#    (u_t = w_f * W_U[:, t]).
# 2. The identity u . mlp(x) = x^T Q_u x, checked on cached activations.
# 3. The eigendecomposition Q_u = sum_k lambda_k v_k v_k^T: spectrum (PNG) and statistics.
# 4. Top eigenvectors read as tokens through the embedding (PNG table).
# 5. HOSVD: the output directions the layer writes most, without any token in mind.
# 6. Truncation: keep the top-k eigencomponents per HOSVD direction, swap the MLP in the hooked model, and measure the
#    loss on held-out text (PNG curve), on two disjoint halves to show the curve is stable.
#
# Held-out text: the checkpoint was trained on synthetic template stories (scripts/train_embedded.py, seed 0); the
# same generator with another seed writes stories it never saw, tokenized and packed into n_ctx-token rows as in
# training.

# %%
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

import hooked_bilinear as hb
from hooked_bilinear.analysis import (
    TruncationCurve,
    contrast_directions,
    eigenvector_similarity,
    spectrum_stats,
    top_tokens,
    truncation_curve,
)
from hooked_bilinear.analysis.plots import (
    plot_spectrum,
    plot_token_table,
    plot_truncation_curve,
    show_in_notebook,
)

# the repository's scripts/: beside this file's folder as a script; under the working directory as a notebook
ROOT = Path(__file__).resolve().parent.parent if "__file__" in globals() else Path.cwd()
sys.path.insert(0, str(ROOT / "scripts"))
from train_embedded import make_corpus  # noqa: E402  the generator of the checkpoint's training corpus

HELD_OUT_SEED = 1  # the checkpoint's corpus used seed 0
ROWS_PER_HALF = 64  # 64 rows x 128 tokens = 8192 tokens per half, 16384 in all


def held_out_tokens(model: Any, rows: int) -> torch.Tensor:
    """[rows, n_ctx] tokens of stories the model never saw, packed as in training ([BOS] story [EOS] ...)."""
    tokenizer, n_ctx = model.tokenizer, model.cfg.n_ctx
    ids: list[int] = []
    for story in make_corpus(rows * n_ctx // 30, seed=HELD_OUT_SEED):  # ~70 tokens a story
        ids.extend(tokenizer(story)["input_ids"] + [tokenizer.eos_token_id])
        if len(ids) >= rows * n_ctx:
            break
    if len(ids) < rows * n_ctx:
        raise RuntimeError(f"only {len(ids)} held-out tokens generated, {rows * n_ctx} needed")
    return torch.tensor(ids[: rows * n_ctx]).reshape(rows, n_ctx)


parser = argparse.ArgumentParser(description="Reading a bilinear MLP from its weights.")
parser.add_argument("--out", type=Path, default=Path("out/weight_analysis"))
args, _ = parser.parse_known_args()  # in a notebook the kernel's own arguments are left alone
args.out.mkdir(parents=True, exist_ok=True)


# %% [markdown]
# ## The model

# %%
torch.manual_seed(0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = hb.from_pretrained("ts-synthetic-2l")
layer, word = 1, "cat"
mlp = model.blocks[layer].mlp
token = model.tokenizer.convert_tokens_to_ids(word)

# %% [markdown]
# ## 1. The output direction

# %%
# 1. the output direction: the token against the rest of the vocabulary (unembedding_directions gives the token
#    alone), through the final norm's weight and the unembedding
u_contrast = contrast_directions(model, token)[0]

# %% [markdown]
# ## 2. The identity on activations of held-out text

# %%
# 2. the identity on activations of held-out text
tokens = held_out_tokens(model, 2 * ROWS_PER_HALF)
_, cache = model.run_with_cache(tokens[:8])
x, out = cache[f"blocks.{layer}.mlp.hook_in"], cache[f"blocks.{layer}.mlp.hook_out"]
Q = mlp.interaction_matrix(u_contrast)
error = (torch.einsum("bpi,ij,bpj->bp", x, Q, x) - out @ u_contrast).abs().max() / (out @ u_contrast).abs().max()
print(f"layer {layer}, direction '{word}' vs the rest: max relative error of u.mlp(x) = x^T Q_u x: {error:.1e}")

# %% [markdown]
# ## 3. The spectrum

# %%
# 3. the spectrum
eigen = mlp.eigendecompose(u_contrast)
stats = spectrum_stats(eigen.lambda_, k=8)
print(
    f"spectrum of Q_u ({len(eigen.lambda_)} eigenvalues): effective rank {stats.effective_rank:.1f}, "
    f"top-8 share of ||Q||_F^2 {stats.top_k_mass:.2f}, balance {stats.balance:+.2f}"
)
plot_spectrum(eigen.lambda_, args.out / "spectrum.png", title=f"Q_u for '{word}' vs rest, layer {layer}")
show_in_notebook(args.out / "spectrum.png")

# %% [markdown]
# ## 4. The top eigenvectors read as tokens

# %%
# 4. what the top eigenvectors read, through the embedding
top4 = eigen.v[:4]
table = top_tokens(model, top4, k=6, through="embed", layer=layer)
labels = [f"v{i} (lambda {lam:+.2f})" for i, lam in enumerate(eigen.lambda_[:4].tolist())]
print("top eigenvectors read through the embedding:\n" + str(table))
plot_token_table(table, args.out / "top_eigenvectors.png", labels=labels, title=f"'{word}' vs rest, layer {layer}")
show_in_notebook(args.out / "top_eigenvectors.png")

# the same direction in layer 0: are its top eigenvectors similar?
other = model.blocks[0].mlp.eigendecompose(u_contrast, k=4)
similarity = eigenvector_similarity(eigen.v[:4], other.v)
print(
    f"|cos| of layer-{layer} vs layer-0 top-4 eigenvectors, best match per vector: "
    f"{[round(s, 2) for s in similarity.max(1).values.tolist()]}"
)

# %% [markdown]
# ## 5. HOSVD

# %%
# 5. HOSVD: where the layer writes most
hosvd = mlp.hosvd(model.cfg.d_model, k=1)
share = (hosvd.sigma[:8].square().sum() / hosvd.sigma.square().sum()).item()
print(
    f"HOSVD: top-8 output directions hold {share:.0%} of ||B||^2; the first reads as "
    f"{top_tokens(model, hosvd.u[:1], k=5).top_tokens[0]}"
)

# %% [markdown]
# ## 6. Truncation

# %%
# 6. truncation: the top-k eigencomponents per HOSVD direction, measured in the model on held-out text, on two
#    disjoint halves; equal halves, so the mean of their losses is the loss on all of it
truncated = mlp.truncate(hosvd.u, k=64)
ks = [1, 2, 4, 8, 16, 32, 64]
halves = [truncation_curve(model, layer, truncated, half, ks, progress=False) for half in tokens.split(ROWS_PER_HALF)]
curve = TruncationCurve(
    ks,
    [sum(h.loss[i] for h in halves) / 2 for i in range(len(ks))],
    [sum(h.correlation[i] for h in halves) / 2 for i in range(len(ks))],
    sum(h.baseline_loss for h in halves) / 2,
)
print(f"truncation on {tokens.numel()} held-out tokens (2 disjoint halves of {tokens[:ROWS_PER_HALF].numel()}):")
for i, (k, loss, corr) in enumerate(zip(curve.ks, curve.loss, curve.correlation)):
    print(
        f"  keep {k:>2} per direction: loss {loss:.3f} (original {curve.baseline_loss:.3f}; halves "
        f"{halves[0].loss[i]:.3f} / {halves[1].loss[i]:.3f}), output corr {corr:.3f}"
    )
increase = [[loss - h.baseline_loss for loss in h.loss] for h in halves]
spread = max(abs(a - b) for a, b in zip(*increase))
corr_spread = max(abs(a - b) for a, b in zip(halves[0].correlation, halves[1].correlation))
print(
    f"  stability: the halves' loss increases over the original differ by at most {spread:.3f} nats, their "
    f"output correlations by at most {corr_spread:.3f}"
)
plot_truncation_curve(
    curve,
    args.out / "truncation.png",
    parts=halves,
    title=f"layer {layer}, HOSVD basis, {tokens.numel()} held-out tokens",
)
print(f"pictures in {args.out}/")
show_in_notebook(args.out / "truncation.png")
