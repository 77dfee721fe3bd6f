"""One training step of the pizza set-up: the forward pass against uniform_answer_logits (per-token tables).

    python benchmarks/bench_modadd_train.py [--repeats 20] [--threads 1]

Both compute the same function of the weights (tests/toy/modadd/test_train.py); this times a full-batch step
(logits of the training pairs, cross-entropy, backward, AdamW) and prints median seconds and their ratio, the two
interleaved in one run so that the machine's load affects both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.toy.modadd import PIZZA
from hooked_bilinear.toy.modadd.train import SETUP_TRAINING, answer_logits, build_modadd_model, uniform_answer_logits

Logits = Callable[[BilinearForCausalLM, torch.Tensor], torch.Tensor]


def step_seconds(model: BilinearForCausalLM, logits_of: Logits, optimizer: torch.optim.Optimizer) -> float:
    tokens, labels = PIZZA.tokens(), PIZZA.labels()
    train_rows, _ = PIZZA.split()
    start = time.perf_counter()
    loss = F.cross_entropy(logits_of(model, tokens[train_rows]), labels[train_rows])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths: dict[str, Logits] = {"forward pass": answer_logits, "per-token tables": uniform_answer_logits}
    models = {name: build_modadd_model(PIZZA, SETUP_TRAINING["pizza"][0]) for name in paths}
    optimizers = {name: torch.optim.AdamW(models[name].parameters(), lr=1e-3) for name in paths}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, logits_of in paths.items():
            times[name].append(step_seconds(models[name], logits_of, optimizers[name]))
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    for name, median in medians.items():
        print(f"{name}: {median * 1e3:.1f} ms per step (median of {args.repeats}, {args.threads} thread(s))")
    print(f"ratio: {medians['forward pass'] / medians['per-token tables']:.2f}x")


if __name__ == "__main__":
    main()
