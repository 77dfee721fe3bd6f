"""Size and generation time of a dashboard at the issue's budget: 100 directions x 8 eigenvectors x 20 contexts
(10 top and 10 bottom) on the shipped ts-synthetic-2l, layer 1, over its held-out stories (108 x 128 tokens):
84 token contrasts (the most frequent tokens) and 16 live SAE output features with their input-feature interactions.

    python benchmarks/bench_dashboard.py [--out out/dashboard_budget.html] [--layer 1]

Prints the file size (budget: under 20 MB) and the generation time; writes the page.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import hooked_bilinear as hb
from hooked_bilinear.dashboard.shipped import write_shipped_dashboard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/dashboard_budget.html"))
    parser.add_argument("--layer", type=int, default=1)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.from_pretrained("ts-synthetic-2l")
    written = write_shipped_dashboard(model, args.layer, args.out, n_tokens=84, n_features=16, k=8, n_contexts=10)
    print(
        f"{written.n_directions} directions x 8 eigenvectors x 20 contexts: {written.size_bytes / 1e6:.2f} MB "
        f"(budget 20 MB), written in {written.seconds:.1f} s ({time.perf_counter() - started:.1f} s with loading)"
    )


if __name__ == "__main__":
    main()
