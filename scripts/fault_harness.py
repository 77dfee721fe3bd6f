"""Kill, starve and race every writer of hooked_bilinear, and count the survivors (issue 30; docs/fault-tolerance.md).

    python scripts/fault_harness.py --trials 20 --seed 0            # every case, 20 trials each (CPU, minutes)
    python scripts/fault_harness.py --trials 3 --cases save_kill     # one case

Cases (the logic is tests/fault_runs.py, which the CI tests use with fewer trials):
  restart      torchrun --max-restarts 1 on 2 gloo processes; one worker SIGKILLed at a random moment of training;
               the restarted group must resume from the last checkpoint and end bit-identical to an uninterrupted run
  train_kill   bilinearize with checkpoints every 2 steps, SIGKILLed at a random moment; the rerun must resume from
               `latest` and end bit-identical to the uninterrupted run; no leftovers
  save_kill    save_pretrained over an existing folder, SIGKILLed: the folder is the old or the new one, file for file
  corpus_kill  building the tokenized corpus cache, SIGKILLed: no cache file, or the complete one
  sae_kill     an SAE saved over an existing one (with another file beside it), SIGKILLed: old or new, never a mix
  full_disk    each of the four writers with every file capped below what it needs (RLIMIT_FSIZE): one clear error
               naming the target, the old artifact intact, nothing partial; then the rerun succeeds
  concurrent   two writers of the same target at once (save, SAE, corpus cache, training): one complete artifact

Problems are printed as they happen; the LAST line is one JSON object mapping each case to [survived, tried].
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.fault_runs

import torch  # noqa: E402
from tests import fault_runs  # noqa: E402

CASES = ("restart", "train_kill", "save_kill", "corpus_kill", "sae_kill", "full_disk", "concurrent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="trials per case (full_disk, concurrent: per writer)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    root = args.work or Path(tempfile.mkdtemp(prefix="fault-harness-"))
    began = time.perf_counter()
    counts: dict[str, list[int]] = {}

    def record(case: str, label: str, problems: list[str]) -> None:
        survived, tried = counts.setdefault(case, [0, 0])
        counts[case] = [survived + (not problems), tried + 1]
        for problem in problems:
            print(f"{case} {label}: {problem}", flush=True)

    needed = {"train_kill": "train", "save_kill": "save", "corpus_kill": "corpus", "sae_kill": "sae"}
    names = {needed[c] for c in args.cases if c in needed}
    if {"full_disk", "concurrent"} & set(args.cases):
        names |= set(fault_runs.KINDS)
    kinds = fault_runs.prepare(root, tuple(n for n in fault_runs.KINDS if n in names))
    for name, kind in kinds.items():
        print(f"{name}: an uninterrupted write takes {kind.seconds:.2f} s", flush=True)  # type: ignore[attr-defined]
    for case in args.cases:
        started = time.perf_counter()
        if case == "restart":
            for trial in range(args.trials):
                record(case, f"trial {trial}", fault_runs.restart_trial(root / "restart" / "trial", rng))
                print(f"restart: {counts[case][0]} / {counts[case][1]} survived so far", flush=True)
            print(f"restart: resumed from steps {fault_runs.RESUMED}")
        elif case in needed:
            kind = kinds[needed[case]]
            for trial in range(args.trials):
                record(case, f"trial {trial}", fault_runs.kill_trial(kind, root / case / "trial", rng))
            print(f"{case}: {getattr(kind, 'landed', 0)} of {args.trials} kills landed before the write ended")
        else:
            check = fault_runs.full_disk_trial if case == "full_disk" else fault_runs.concurrent_trial
            for trial in range(args.trials):
                for name, kind in kinds.items():
                    record(case, f"{name} trial {trial}", check(kind, root / case / name, rng))
        survived, tried = counts.get(case, [0, 0])
        print(f"{case}: {survived} / {tried} survived ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"root {root}; {time.perf_counter() - began:.0f} s in all", flush=True)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
