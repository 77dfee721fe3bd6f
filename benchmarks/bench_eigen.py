"""Top-k eigenpairs of Q_u for a whole vocabulary of directions: hooked_bilinear vs the reference approach.

    python benchmarks/bench_eigen.py [--preset ts-medium|tinyllama] [--device cpu|cuda] [--directions N]
                                     [--repeats 3] [--no-reference] [--json out.json]

Layer: random bilinear weights of the preset's shape (ts-medium: d_model 512, d_hidden 2048, 4096 directions;
tinyllama: d_model 2048, d_hidden 5632, 32000 directions), float32, k = 8. The directions are random, as a
vocabulary's unembedding rows are to this layer.

  fast       hooked_bilinear.analysis.eigendecompose(factors, U, k=8) (batched Q_u from the factors, block Krylov)
  reference  materialise B [d, d, d] once, then per direction: Q_u = sum_o u_o B[o], torch.linalg.eigh, top-8

Each method runs in its own subprocess, so that its peak memory (CPU: peak resident set minus the resident set
just before the method starts, weights already loaded; CUDA: torch.cuda.max_memory_allocated minus the weights) is
its own. Both return the top-8 eigenpairs (values and vectors: the same output size, reported as output_MiB);
working_memory_ratio leaves that shared output out. Reported: median wall time over --repeats (the reference runs once: it takes minutes), the speed-up,
the peak-memory ratio, and the largest relative difference of the eigenvalues. Targets (issue 4, CPU): >= 5x
faster, eigenvalues within 1e-4 relative, peak memory <= 1/10 of the reference's.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hooked_bilinear.analysis import BilinearFactors, eigendecompose

PRESETS = {"ts-medium": (512, 2048, 4096), "tinyllama": (2048, 5632, 32000)}
K = 8


def layer(d_model: int, d_hidden: int, n: int, device: str) -> tuple[BilinearFactors, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    W_gate = torch.randn(d_model, d_hidden, generator=g) / d_model**0.5
    W_in = torch.randn(d_model, d_hidden, generator=g) / d_model**0.5
    W_out = torch.randn(d_hidden, d_model, generator=g) / d_hidden**0.5
    U = torch.randn(n, d_model, generator=g)
    factors = BilinearFactors.from_weights(W_gate.to(device), W_in.to(device), W_out.to(device))
    return factors, U.to(device)


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def reference(factors: BilinearFactors, U: torch.Tensor) -> torch.Tensor:
    """Materialise B, contract with each direction, dense eigh in a Python loop."""
    d = factors.d_in
    B = torch.empty(d, d, d, dtype=factors.dtype, device=factors.device)
    for o in range(d):
        A = (factors.W_gate * factors.W_out[:, o]) @ factors.W_in.T
        B[o] = 0.5 * (A + A.T)
    lam_out = torch.empty(U.shape[0], K, dtype=factors.dtype, device=factors.device)
    v_out = torch.empty(U.shape[0], K, d, dtype=factors.dtype, device=factors.device)
    for n in range(U.shape[0]):
        Q = torch.tensordot(U[n], B, dims=1)
        lam, v = torch.linalg.eigh(Q)
        top = lam.abs().argsort(descending=True)[:K]
        lam_out[n], v_out[n] = lam[top], v[:, top].T
    return lam_out, v_out


def worker(args: argparse.Namespace) -> None:
    d_model, d_hidden, n = PRESETS[args.preset]
    n = args.directions or n
    factors, U = layer(d_model, d_hidden, n, args.device)
    cuda = args.device == "cuda"
    times = []
    repeats = 1 if args.worker == "reference" else args.repeats
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            before = resident_bytes()
        start = time.perf_counter()
        if args.worker == "reference":
            lam, v = reference(factors, U)
        else:
            lam, v = eigendecompose(factors, U, K, progress=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        peak = (
            torch.cuda.max_memory_allocated() - before
            if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        )
    output = lam.numel() * lam.element_size() + v.numel() * v.element_size()  # the eigenpairs returned: same for both
    torch.save({"lambda": lam.cpu(), "times": times, "peak_bytes": peak, "output_bytes": output}, args.result)


def run(method: str, args: argparse.Namespace, folder: Path) -> dict:
    result = folder / f"{method}.pt"
    command = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--result",
        str(result),
        "--preset",
        args.preset,
        "--device",
        args.device,
        "--repeats",
        str(args.repeats),
    ]
    if args.directions:
        command += ["--directions", str(args.directions)]
    subprocess.run(command, check=True)
    return torch.load(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="ts-medium")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--directions", type=int, default=None, help="number of directions (default: the preset's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="time the fast path only")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", choices=["fast", "reference"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    d_model, d_hidden, n = PRESETS[args.preset]
    n = args.directions or n
    print(
        f"layer d_model={d_model} d_hidden={d_hidden}, {n} directions, top-{K}, float32, {args.device}, "
        f"threads={torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        fast = run("fast", args, Path(tmp))
        report = {
            "preset": args.preset,
            "device": args.device,
            "directions": n,
            "fast_seconds": statistics.median(fast["times"]),
            "fast_all_seconds": fast["times"],
            "fast_peak_MiB": fast["peak_bytes"] / 2**20,
            "output_MiB": fast["output_bytes"] / 2**20,
        }
        if not args.no_reference:
            ref = run("reference", args, Path(tmp))
            rel = ((fast["lambda"].double() - ref["lambda"].double()).abs() / ref["lambda"].double().abs()).max()
            report.update(
                reference_seconds=ref["times"][0],
                reference_peak_MiB=ref["peak_bytes"] / 2**20,
                speedup=ref["times"][0] / report["fast_seconds"],
                memory_ratio=fast["peak_bytes"] / ref["peak_bytes"],
                working_memory_ratio=(fast["peak_bytes"] - fast["output_bytes"])
                / (ref["peak_bytes"] - ref["output_bytes"]),
                max_relative_eigenvalue_error=rel.item(),
            )
    for key, value in report.items():
        print(f"{key:>30}: {value:.4g}" if isinstance(value, float) else f"{key:>30}: {value}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
