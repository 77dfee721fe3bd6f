# %% [markdown]
# # Features at dataset scale on the shipped `ts-synthetic-2l`: activations streamed from a text corpus, cached to
# disk, SAEs trained from the stream, and each feature's top examples found in one pass, never holding the dataset's
# activations in memory.
#
#     python tutorials/streaming.py [--out out/streaming] [--stories 2000]
#
# No download; well under a minute on CPU.
# 1. A text corpus (synthetic stories, one per line) read as a `Corpus`: tokenized once, memory-mapped.
# 2. An ActivationStore of layer 1's MLP input and output (one forward pass for both, stopped after layer 1's MLP),
#    written to a sharded safetensors cache (rerun it: the finished cache is reused; an interrupted one resumes).
# 3. Two TopK SAEs (one per hook) trained together from the cache, through a shuffle buffer; FVU, L0, dead latents.
# 4. One pass of statistics over the cache: the density of every feature (PNG) and the top-k and bottom-k values of
#    the eigenvector projections `v . x'` of the shipped output SAE's strongest features, with their contexts.
# 5. Fig. 9 from the stream: how well the top-k eigenvectors predict the shipped output SAE's features (PNG).
# 6. The shipped output SAE's features ranked by the streamed statistics (density, dead and ultra-rare features,
#    largest and mean activation, Fig. 9's correlation), and the paper's weight-based selection (top eigenvalue)
#    restricted to the features alive in the data.
# Steps 4 to 6 read the cache (no forward pass); the store gives the tokens around each example.

# %%
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

import hooked_bilinear as hb
from hooked_bilinear import analysis as A
from hooked_bilinear import sae as S
from hooked_bilinear.activations import (
    ActivationStore,
    column_statistics,
    eigen_approximation_stream,
    eigen_columns,
    examples,
    feature_table,
    rank_features,
    sae_columns,
)
from hooked_bilinear.activations.cache import ActivationCache, write_cache
from hooked_bilinear.analysis.plots import plot_eigen_approximation, pyplot
from hooked_bilinear.making.corpus import Corpus
from hooked_bilinear.sae.train import SAETrainConfig, evaluate_sae, train_saes

ROOT = Path(__file__).resolve().parent.parent if "__file__" in globals() else Path.cwd()
sys.path.insert(0, str(ROOT / "scripts"))
from train_embedded import make_corpus  # noqa: E402

HOOK_IN, HOOK_OUT = "blocks.1.mlp.hook_in", "blocks.1.mlp.hook_out"


def main() -> None:
    parser = argparse.ArgumentParser(description="Features at dataset scale on the shipped ts-synthetic-2l.")
    parser.add_argument("--out", type=Path, default=Path("out/streaming"))
    parser.add_argument("--stories", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    args, _ = parser.parse_known_args()  # in a notebook the kernel's own arguments are left alone
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.from_pretrained("ts-synthetic-2l")

    # 1. a text corpus, one story per line
    text = args.out / "stories.txt"
    text.write_text("\n".join(make_corpus(args.stories, seed=4)) + "\n")
    corpus = Corpus(str(text))

    # 2. the store and its disk cache
    store = ActivationStore(
        model,
        corpus,
        [HOOK_IN, HOOK_OUT],
        model_batch_size=16,
        exclude_bos=True,
        corpus_cache=args.out / "tokens",
    )
    print(f"corpus: {store.n_sequences} sequences x {store.seq_len} tokens, BOS positions left out")
    write_cache(store, args.out / "activations", shard_sequences=64)
    cache = ActivationCache(args.out / "activations", model=model, buffer_size=16384, seed=0)
    print(f"cache: {cache.n_chunks} shards, {cache.n_rows} activations per hook, in {args.out / 'activations'}")

    # 3. two SAEs from one stream
    config = SAETrainConfig(steps=args.steps, batch_size=512, lr=2e-3, seed=0, dead_after=50_000)
    saes = train_saes(cache, config, progress=False, checkpoint_dir=args.out / "sae_state")
    for hook, result in saes.items():
        sample = torch.cat([b.activations[hook] for b in cache.batches(4096, shuffle=False)][:2])
        stats = evaluate_sae(result.sae, sample)
        print(
            f"{hook}: SAE trained from the stream; on {len(sample)} cached activations FVU {stats.fvu:.3f}, "
            f"L0 {stats.l0:.1f}, dead {stats.dead:.1%}"
        )

    # 4. one pass of statistics: densities of every feature, top / bottom examples of eigenvectors
    mlp = model.blocks[1].mlp
    shipped_out = S.load(f"ts-synthetic-2l/{HOOK_OUT}")
    weights = A.rank_output_features(mlp, shipped_out, progress=False)  # by top |eigenvalue|, from the weights
    strongest = weights.features[:4]
    eigen = A.output_feature_eigen(mlp, shipped_out, strongest, k=2)  # 4 features x 2 eigenvectors = 8 columns
    columns = {hook: (hook, sae_columns(result.sae)) for hook, result in saes.items()}
    columns["eigen"] = (HOOK_IN, eigen_columns(mlp, eigen, kind="projection"))
    columns["shipped"] = (HOOK_OUT, sae_columns(shipped_out))  # for step 6
    stats = column_statistics(cache, columns, k=3)  # from the cache: no forward pass; contexts from the store
    for hook in saes:
        density = stats[hook].density
        print(f"{hook}: feature density median {density.median():.3%}, {int((density == 0).sum())} never active")
    top, bottom = stats["eigen"].top, stats["eigen"].bottom
    assert bottom is not None
    for column in range(0, 8, 2):
        feature, lam = int(strongest[column // 2]), float(eigen.lambda_.reshape(-1)[column])
        print(f"output feature {feature}, top eigenvector (lambda {lam:+.2f}): largest and smallest v . x'")
        for example in examples(store, top, column, context=6) + examples(store, bottom, column, context=6):
            print("   ", example)
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for hook in saes:
        density = stats[hook].density.clamp_min(1e-6).log10()
        axis.hist(density.numpy(), bins=40, alpha=0.6, label=hook)
    axis.set(xlabel="log10 feature density", ylabel="features", title="SAE feature densities (one streamed pass)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.out / "feature_density.png", dpi=120)
    plt.close(figure)

    # 5. Fig. 9 from the stream
    features = list(range(0, shipped_out.d_sae, 4))
    approx = eigen_approximation_stream(mlp, shipped_out, cache, HOOK_IN, features, ks=(1, 2, 4, 8))
    counted = approx.n_active > 10
    means = approx.correlation[counted].nanmean(0)
    print(
        f"Fig. 9 from the stream over {int(counted.sum())} output features (every 4th, active > 10 times): mean "
        "correlation " + ", ".join(f"k={k} {m:.3f}" for k, m in zip(approx.ks, means.tolist()))
    )
    plot_eigen_approximation(list(approx.ks), approx.correlation[counted], args.out / "eigen_approximation.png")

    # 6. feature rankings from the streamed statistics, joined with the weight-based ranking
    # (ultra-rare: the usual cut is density < 1e-5, below one activation on this corpus's tokens: 1e-4 here)
    table = feature_table(stats["shipped"], approximation=approx, weights=weights, rare_below=1e-4)
    print(
        f"shipped output SAE over {stats['shipped'].rows} streamed activations: {len(table.features)} features, "
        f"{int(table.dead.sum())} dead, {int(table.ultra_rare.sum())} ultra-rare (density < 1e-4)"
    )
    for by, label in (
        ("density", "density"),
        ("max_activation", "largest activation"),
        ("mean_active", "mean activation when active"),
        ("correlation", "Fig. 9 correlation (k=8)"),
    ):
        ranking = rank_features(table, by, skip_dead=True)
        top = ", ".join(f"{f} ({s:.3g})" for f, s in zip(ranking.features[:5].tolist(), ranking.score[:5].tolist()))
        print(f"top features by {label}: {top}")
    alive = rank_features(table, "top_eigenvalue", skip_dead=True, skip_ultra_rare=True)
    print(
        f"the paper's selection, by top |eigenvalue| from the weights, restricted to the {len(alive.features)} "
        "features alive (and not ultra-rare) in the data:"
    )
    assert table.mean_active is not None and table.top_eigenvalue is not None
    for feature in alive.features[:5].tolist():  # table rows are feature ids 0..511
        print(
            f"    feature {feature}: top eigenvalue {table.top_eigenvalue[feature]:+.3f}, density "
            f"{table.density[feature]:.3%}, largest activation {table.max_activation[feature]:.2f}, mean when "
            f"active {table.mean_active[feature]:.2f}"
        )
    print(f"done in {time.perf_counter() - started:.0f} s; pictures in {args.out}")


if __name__ == "__main__":
    main()
