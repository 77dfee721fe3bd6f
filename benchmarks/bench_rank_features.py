"""rank_output_features with an input SAE: the spectrum of D Q D^T through G^(1/2) Q G^(1/2) (new) against eigvalsh
on every n x n D Q D^T (old, the package's path before issue 27).

    python benchmarks/bench_rank_features.py [--scale shipped|ts-medium] [--features N] [--repeats 3] [--json out.json]

shipped: the shipped ts-synthetic-2l, layer 1 (d_model 128), with its shipped 512-feature input and output SAEs,
all 512 output features. ts-medium: random bilinear weights (d_model 512, d_hidden 2048) and random SAEs of 4096
features; the old path takes seconds per feature there (a 4096 x 4096 eigvalsh each), so both rank the first
--features output features (default 8) and the old path's time for all 4096 is extrapolated linearly.

Both run in this process on the same inputs, alternating, --repeats times; reported: the median wall time of each, the
ratio of the medians, the per-run ratios, whether the rankings by top eigenvalue are identical, and the largest
difference of the top eigenvalues. float32, one thread per op as torch is set (OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from hooked_bilinear.analysis import BilinearFactors, rank_output_features
from hooked_bilinear.analysis.features import input_basis, output_feature_directions
from hooked_bilinear.analysis.interaction import interaction_matrix


def old_top_eigenvalues(factors: BilinearFactors, sae_out: Any, sae_in: Any, features: list[int]) -> torch.Tensor:
    """The old path: eigvalsh of every n x n D Q_e D^T (chunks of 64 features); the signed top eigenvalue of each."""
    D, _ = input_basis(factors, sae_in)
    u = output_feature_directions(sae_out, features).to(factors.dtype)
    u = u / u.norm(dim=-1, keepdim=True)
    spectra = [
        torch.linalg.eigvalsh(D @ interaction_matrix(factors, u[s : s + 64]) @ D.T) for s in range(0, len(u), 64)
    ]
    lam = torch.cat(spectra)
    return torch.gather(lam, 1, lam.abs().argmax(-1, keepdim=True))[:, 0]


class RandomSAE:
    """Duck-typed SAE: W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec (no hook name: nothing to check)."""

    def __init__(self, d_in: int, d_sae: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.W_enc = torch.randn(d_in, d_sae, generator=g) / d_in**0.5
        self.W_dec = torch.randn(d_sae, d_in, generator=g) / d_in**0.5
        self.b_enc, self.b_dec = torch.zeros(d_sae), torch.zeros(d_in)


def setup(scale: str, n_features: int | None) -> tuple[Any, Any, Any, list[int]]:
    if scale == "shipped":
        import hooked_bilinear as hb
        from hooked_bilinear import sae as S

        mlp = hb.from_pretrained("ts-synthetic-2l").blocks[1].mlp
        sae_in, sae_out = (
            S.load("ts-synthetic-2l/blocks.1.mlp.hook_in"),
            S.load("ts-synthetic-2l/blocks.1.mlp.hook_out"),
        )
        return mlp.factors(), sae_out, sae_in, list(range(n_features or sae_out.W_enc.shape[1]))
    d_model, d_hidden, d_sae = 512, 2048, 4096
    g = torch.Generator().manual_seed(0)
    W_gate, W_in = (torch.randn(d_model, d_hidden, generator=g) / d_model**0.5 for _ in range(2))
    W_out = torch.randn(d_hidden, d_model, generator=g) / d_hidden**0.5
    factors = BilinearFactors(W_gate, W_in, W_out, False)
    return factors, RandomSAE(d_model, d_sae, 1), RandomSAE(d_model, d_sae, 2), list(range(n_features or 8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["shipped", "ts-medium"], default="shipped")
    parser.add_argument("--features", type=int, help="output features ranked (default: all shipped; 8 at ts-medium)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    factors, sae_out, sae_in, features = setup(args.scale, args.features)
    old_times, new_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        old = old_top_eigenvalues(factors, sae_out, sae_in, features)
        old_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        new = rank_output_features(factors, sae_out, sae_in=sae_in, features=features, progress=False)
        new_times.append(time.perf_counter() - start)
    old_order = [features[i] for i in old.abs().argsort(descending=True, stable=True).tolist()]
    result = {
        "scale": args.scale,
        "features_ranked": len(features),
        "input_sae_features": int(sae_in.W_dec.shape[0]),
        "d_in": factors.d_in,
        "threads": torch.get_num_threads(),
        "old_median_s": statistics.median(old_times),
        "new_median_s": statistics.median(new_times),
        "speedup_of_medians": statistics.median(old_times) / statistics.median(new_times),
        "speedup_per_run": [o / n for o, n in zip(old_times, new_times)],
        "identical_ranking": new.features.tolist() == old_order,
        "max_abs_top_eigenvalue_difference": (new.top_eigenvalue - old[old.abs().argsort(descending=True, stable=True)])
        .abs()
        .max()
        .item(),
    }
    if args.scale == "ts-medium":
        total = sae_out.W_enc.shape[1]
        result["old_all_features_s_extrapolated"] = result["old_median_s"] * total / len(features)
        result["new_all_features_s_extrapolated"] = result["new_median_s"] * total / len(features)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
