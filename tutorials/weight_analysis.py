"""Reading a bilinear MLP from its weights: interaction matrices, eigenvectors, HOSVD, truncation.

    python tutorials/weight_analysis.py [--out out/weight_analysis]

On the shipped checkpoint `ts-synthetic-2l` (no download):
1. The output direction of a token against the rest, through the final norm and unembedding (u_t = w_f * W_U[:, t]).
2. The identity u . mlp(x) = x^T Q_u x, checked on cached activations.
3. The eigendecomposition Q_u = sum_k lambda_k v_k v_k^T: spectrum (PNG) and statistics.
4. Top eigenvectors read as tokens through the embedding (PNG table).
5. HOSVD: the output directions the layer writes most, without any token in mind.
6. Truncation: keep the top-k eigencomponents per HOSVD direction, swap the MLP in the hooked model, and measure the
   loss (PNG curve).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

import hooked_bilinear as hb
from hooked_bilinear.analysis import (
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
)

PROMPTS = ["once upon a time ,", "one day ,", "there was a", "mia found a", "tom went to the"]


def story_tokens(model, length: int = 40) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """[len(PROMPTS), length] tokens of stories the model tells itself (greedy): text from its own distribution."""
    stories = [model.generate(p, max_new_tokens=length, do_sample=False, verbose=False) for p in PROMPTS]
    return torch.stack([model.to_tokens(s)[0, :length] for s in stories])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/weight_analysis"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.from_pretrained("ts-synthetic-2l")
    layer, word = 1, "cat"
    mlp = model.blocks[layer].mlp
    token = model.tokenizer.convert_tokens_to_ids(word)

    # 1. the output direction: the token against the rest of the vocabulary (unembedding_directions gives the token
    #    alone), through the final norm's weight and the unembedding
    u_contrast = contrast_directions(model, token)[0]

    # 2. the identity on real activations
    tokens = story_tokens(model)
    _, cache = model.run_with_cache(tokens)
    x, out = cache[f"blocks.{layer}.mlp.hook_in"], cache[f"blocks.{layer}.mlp.hook_out"]
    Q = mlp.interaction_matrix(u_contrast)
    error = (torch.einsum("bpi,ij,bpj->bp", x, Q, x) - out @ u_contrast).abs().max() / (out @ u_contrast).abs().max()
    print(f"layer {layer}, direction '{word}' vs the rest: max relative error of u.mlp(x) = x^T Q_u x: {error:.1e}")

    # 3. the spectrum
    eigen = mlp.eigendecompose(u_contrast)
    stats = spectrum_stats(eigen.lambda_, k=8)
    print(f"spectrum of Q_u ({len(eigen.lambda_)} eigenvalues): effective rank {stats.effective_rank:.1f}, "
          f"top-8 share of ||Q||_F^2 {stats.top_k_mass:.2f}, balance {stats.balance:+.2f}")
    plot_spectrum(eigen.lambda_, args.out / "spectrum.png", title=f"Q_u for '{word}' vs rest, layer {layer}")

    # 4. what the top eigenvectors read, through the embedding
    top4 = eigen.v[:4]
    table = top_tokens(model, top4, k=6, through="embed", layer=layer)
    labels = [f"v{i} (lambda {lam:+.2f})" for i, lam in enumerate(eigen.lambda_[:4].tolist())]
    print("top eigenvectors read through the embedding:\n" + str(table))
    plot_token_table(table, args.out / "top_eigenvectors.png", labels=labels, title=f"'{word}' vs rest, layer {layer}")

    # the same direction in layer 0: are its top eigenvectors similar?
    other = model.blocks[0].mlp.eigendecompose(u_contrast, k=4)
    similarity = eigenvector_similarity(eigen.v[:4], other.v)
    print(f"|cos| of layer-{layer} vs layer-0 top-4 eigenvectors, best match per vector: "
          f"{[round(s, 2) for s in similarity.max(1).values.tolist()]}")

    # 5. HOSVD: where the layer writes most
    hosvd = mlp.hosvd(model.cfg.d_model, k=1)
    share = (hosvd.sigma[:8].square().sum() / hosvd.sigma.square().sum()).item()
    print(f"HOSVD: top-8 output directions hold {share:.0%} of ||B||^2; the first reads as "
          f"{top_tokens(model, hosvd.u[:1], k=5).top_tokens[0]}")

    # 6. truncation: the top-k eigencomponents per HOSVD direction, measured in the model
    truncated = mlp.truncate(hosvd.u, k=64)
    curve = truncation_curve(model, layer, truncated, tokens, ks=[1, 2, 4, 8, 16, 32, 64])
    for k, loss, corr in zip(curve.ks, curve.loss, curve.correlation):
        print(f"  keep {k:>2} per direction: loss {loss:.3f} (original {curve.baseline_loss:.3f}), output corr {corr:.3f}")
    plot_truncation_curve(curve, args.out / "truncation.png", title=f"layer {layer}, HOSVD basis")
    print(f"pictures in {args.out}/")


if __name__ == "__main__":
    main()
