# %% [markdown]
# # SAE features through a bilinear MLP
#
# The papers' section 5, on the shipped `ts-synthetic-2l` and its shipped SAEs. Run as a script with
# `python tutorials/sae_features.py [--out out/sae_features] [--layers 0,1]`, or open it as a notebook (jupytext).
#
# No download; a minute or two on CPU.
#
# 1. The model and its shipped TopK SAEs (k 30, 4x; MLP input `hook_in` and output `hook_out` of each layer), on
#    held-out synthetic stories: FVU, L0 and the loss added by splicing each SAE in.
# 2. The identity `u . mlp(x_hat) = f^T (D Q_u D^T) f + f . linear + constant` on cached activations, x_hat the input
#    SAE's reconstruction.
# 3. Fig. 9: how well the top-k eigenvectors of Q_e (e = an output feature's encoder row) predict the feature (PNG).
# 4. A circuit from the weights alone: the output feature whose interaction matrix `D Q_e D^T` has the strongest
#    single cross pair of input features relative to the whole matrix; its heat map and Fig. 27's panels (PNGs).
# 5. The check against activations: the output feature when both input features, one, or neither is active; top
#    dataset examples of all three.
#
# Steps 1 and 3-5 run for each layer asked for (both by default); pictures are named by layer.

# %%
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

import hooked_bilinear as hb
from hooked_bilinear import analysis as A
from hooked_bilinear import sae as S
from hooked_bilinear.analysis.plots import (
    plot_eigen_approximation,
    plot_feature_interactions,
    plot_self_cross,
    show_in_notebook,
)
from hooked_bilinear.sae.splice import splice_loss
from hooked_bilinear.sae.train import evaluate_sae, pack_texts

# the repository's scripts/: beside this file's folder as a script; under the working directory as a notebook
ROOT = Path(__file__).resolve().parent.parent if "__file__" in globals() else Path.cwd()
sys.path.insert(0, str(ROOT / "scripts"))
from train_embedded import make_corpus  # noqa: E402  the generator of the checkpoint's training corpus

EVAL_SEED = 3  # the model saw seed 0, the SAEs seeds 1 (training) and 2 (evaluation)

parser = argparse.ArgumentParser(description="SAE features through a bilinear MLP.")
parser.add_argument("--out", type=Path, default=Path("out/sae_features"))
parser.add_argument("--layers", default="0,1", help="comma-separated layers to analyse")
parser.add_argument("--stories", type=int, default=200)
args, _ = parser.parse_known_args()  # in a notebook the kernel's own arguments are left alone
args.out.mkdir(parents=True, exist_ok=True)


# %% [markdown]
# ## The model, held-out stories and the shipped SAEs

# %%
torch.manual_seed(0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = hb.from_pretrained("ts-synthetic-2l")
tokens = pack_texts(model.tokenizer, make_corpus(args.stories, EVAL_SEED), model.cfg.n_ctx)
print(f"held-out synthetic stories: {tokens.shape[0]} x {tokens.shape[1]} tokens")
print("shipped SAEs:", ", ".join(S.shipped()))

# %% [markdown]
# ## Steps 1 to 5, for one layer


# %%
def analyse_layer(model: Any, tokens: torch.Tensor, layer: int, out: Path) -> None:
    """Steps 1 to 5 for one layer; pictures named by layer."""
    # 1. the shipped SAEs
    hook_in, hook_out = f"blocks.{layer}.mlp.hook_in", f"blocks.{layer}.mlp.hook_out"
    sae_in, sae_out = S.load(f"ts-synthetic-2l/{hook_in}"), S.load(f"ts-synthetic-2l/{hook_out}")
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in (hook_in, hook_out))
    d_model = model.cfg.d_model
    x, y = cache[hook_in].reshape(-1, d_model), cache[hook_out].reshape(-1, d_model)
    for name, sae, acts in ((hook_in, sae_in, x), (hook_out, sae_out, y)):
        stats = evaluate_sae(sae, acts)
        loss = splice_loss(model, sae, tokens)
        print(
            f"{name}: FVU {stats.fvu:.4f}, L0 {stats.l0:.1f}, dead {stats.dead:.1%}; loss {loss.clean:.4f} -> "
            f"{loss.spliced:.4f} spliced (+{loss.added:.4f}; zero-ablated {loss.zero_ablated:.4f})"
        )

    # 2. the feature-space identity, in float64
    mlp = model.blocks[layer].mlp
    f = sae_in.encode(x).double()
    x_hat = f @ sae_in.W_dec.double() + sae_in.b_dec.double()
    u = A.output_feature_directions(sae_out, [0, 1, 2]).double()
    M3 = A.feature_interactions(mlp, sae_in, u, dtype=torch.float64)
    bias = A.feature_bias_terms(mlp, sae_in, u, dtype=torch.float64)
    through_features = torch.einsum("ti,nij,tj->tn", f, M3, f) + f @ bias.linear.T + bias.constant
    direct = A.BilinearFactors.from_mlp(mlp, dtype=torch.float64).forward(x_hat) @ u.T
    error = ((through_features - direct).abs().max() / direct.abs().max()).item()
    print(f"u . mlp(x_hat) == f^T (D Q_u D^T) f + bias terms: max relative error {error:.1e}")

    # 3. Fig. 9
    with torch.no_grad():
        acts_out = sae_out.encode(y)
    approx = A.eigen_approximation(mlp, sae_out, x, ks=(1, 2, 4, 8), activations=acts_out)
    counted = approx.n_active > 10
    means = approx.correlation[counted].nanmean(0)
    print(
        f"Fig. 9 over {int(counted.sum())} output features active > 10 times: mean correlation "
        + ", ".join(f"k={k} {m:.3f}" for k, m in zip(approx.ks, means.tolist()))
    )
    plot_eigen_approximation(
        list(approx.ks),
        approx.correlation[counted],
        out / f"eigen_approximation_layer{layer}.png",
        title=f"layer {layer}: top-k eigen approximation vs SAE activation",
    )

    # 4. a circuit from the weights: strongest single cross pair relative to the whole interaction matrix
    live = approx.features[counted]
    i, j = torch.triu_indices(sae_in.d_sae, sae_in.d_sae, offset=1)
    shares = []
    for start in range(0, len(live), 32):  # [32, d_sae, d_sae] at a time
        block = A.feature_interactions(
            mlp, sae_in, A.output_feature_directions(sae_out, live[start : start + 32]), dtype=torch.float64
        )
        strongest = block[:, i, j].abs().max(-1).values
        shares.append((2 * strongest.square() / block.square().sum((-2, -1))).sqrt())
    share = torch.cat(shares)
    pick = int(share.argmax())
    out_feature = int(live[pick])
    M = A.feature_interactions(mlp, sae_in, A.output_feature_directions(sae_out, out_feature)[0], dtype=torch.float64)
    ranking = A.rank_output_features(mlp, sae_out, by="outliers", features=live)
    pairs = A.top_interactions(M, k=6, include_self=True)
    cross_pair = A.top_interactions(M, k=1, include_self=False)
    a, b = int(cross_pair.i[0]), int(cross_pair.j[0])
    print(
        f"circuit: output feature {out_feature} of {hook_out} (rank {int((ranking.features == out_feature).nonzero()[0, 0]) + 1}"
        f" of {len(live)} by IQR outliers of Q_e's spectrum: {int(ranking.outliers[ranking.features == out_feature][0])}); "
        f"its strongest cross pair: input features {a} x {b}, interaction {cross_pair.value[0]:+.3f} "
        f"({share[pick]:.0%} of ||D Q_e D^T||_F)"
    )
    print(
        "strongest entries of its interaction matrix (i, j, value):",
        ", ".join(f"({p}, {q}, {v:+.3f})" for p, q, v in zip(pairs.i.tolist(), pairs.j.tolist(), pairs.value.tolist())),
    )
    shown = sorted(set(pairs.i.tolist() + pairs.j.tolist()))
    plot_feature_interactions(
        M,
        out / f"circuit_interactions_layer{layer}.png",
        features=shown,
        title=f"layer {layer}, output feature {out_feature}: D Q_e D^T (strongest entries)",
    )
    scale = M[i, j].std().item()
    plot_self_cross(
        M,
        A.features.random_symmetric_spectrum(sae_in.d_sae, scale),
        out / f"self_cross_layer{layer}.png",
        title=f"layer {layer}, output feature {out_feature}: self vs cross, spectrum vs random",
    )

    # 5. the check against activations
    on_a, on_b, on_out = f[:, a] > 0, f[:, b] > 0, acts_out[:, out_feature]
    print(
        f"output feature {out_feature} by input features {a} and {b} (token positions; mean activation, fraction active):"
    )
    for label, mask in (
        ("both", on_a & on_b),
        (f"{a} only", on_a & ~on_b),
        (f"{b} only", ~on_a & on_b),
        ("neither", ~on_a & ~on_b),
    ):
        n = int(mask.sum())
        mean = on_out[mask].mean().item() if n else float("nan")
        frac = (on_out[mask] > 0).double().mean().item() if n else float("nan")
        print(f"  {label:>10}: {n:6d} positions, mean {mean:.3f}, active {frac:.0%}")
    values = {f"output feature {out_feature}": on_out, f"input feature {a}": f[:, a], f"input feature {b}": f[:, b]}
    for label, value in values.items():
        print(f"top examples of {label}:")
        for example in A.top_examples(model.tokenizer, tokens, value.reshape(tokens.shape).float(), k=4, context=6):
            print("   ", example)


# %% [markdown]
# ## Every layer

# %%
layers = [int(text) for text in args.layers.split(",")]
for layer in layers:
    print(f"\n=== layer {layer} ===")
    analyse_layer(model, tokens, layer, args.out)

# %% [markdown]
# ## Figures: Fig. 9, the circuit's interaction matrix, Fig. 27's panels

# %%
for layer in layers:
    show_in_notebook(
        *(
            args.out / f"{name}_layer{layer}.png"
            for name in ("eigen_approximation", "circuit_interactions", "self_cross")
        )
    )
