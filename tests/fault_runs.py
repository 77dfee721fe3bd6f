"""Fault injection for every artifact hooked_bilinear writes, shared by the CI tests (tests/test_atomic.py and
tests/making/test_distributed.py, a few trials) and scripts/fault_harness.py (the full count).

Each writer runs in a forked child process (the parent has imported torch once, so a child costs milliseconds) that
is SIGKILLed at a seeded random moment of its run, or runs under RLIMIT_FSIZE (a full disk: SIGXFSZ ignored, so
write() fails with EFBIG), or races a second writer of the same target. Then the target must be the old complete
artifact or the new complete one (compared file by file with reference copies), leftovers must not be loaded, and a
rerun must finish with the uninterrupted result and clean the leftovers. `restart_trial` runs torchrun with
--max-restarts and SIGKILLs one worker mid-run. Every check returns a list of problems: empty means survived."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

FORK = multiprocessing.get_context("fork")
STEPS = 12
TRAIN = dict(
    steps=STEPS, batch_size=4, seq_len=16, warmup_steps=2, checkpoint_every=2, lr=1e-3, progress=False, device="cpu"
)
N_DOCUMENTS = 3000
RESUMED: list[int] = []  # the steps the restart trials resumed from


@dataclass
class Outcome:
    """How a child ended: SIGKILLed before it finished, or the exception it raised ("Class: message") and whether
    that is one of hooked_bilinear's clear errors."""

    killed: bool
    error: str | None = None
    clear: bool = False
    seconds: float = 0.0  # how long the work took, measured in the child


def _child(conn: Any, work: Callable[..., None], args: tuple[Any, ...], limit: int | None) -> None:
    torch.set_num_threads(1)
    if limit is not None:  # a full disk: every file is capped at `limit` bytes; write() fails with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        began = time.perf_counter()
        work(*args)
        conn.send((None, False, time.perf_counter() - began))
    except BaseException as error:  # reported to the parent, which judges it
        from hooked_bilinear.errors import HookedBilinearError

        conn.send((f"{type(error).__name__}: {error}", isinstance(error, HookedBilinearError), 0.0))
    finally:
        conn.close()
        os._exit(0)


def start(work: Callable[..., None], *args: Any, limit: int | None = None) -> tuple[Any, Any]:
    """Fork a child running `work(*args)`."""
    receive, send = FORK.Pipe(duplex=False)
    process = FORK.Process(target=_child, args=(send, work, args, limit))
    process.start()
    send.close()
    return process, receive


def finish(process: Any, receive: Any, kill_after: float | None = None, timeout: float = 600) -> Outcome:
    """Wait for a child (SIGKILL it after `kill_after` seconds if still running) and say how it ended."""
    if kill_after is not None:
        process.join(kill_after)
        if process.exitcode is None:
            os.kill(process.pid, signal.SIGKILL)
    process.join(timeout)
    if process.exitcode is None:
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        return Outcome(killed=True, error="timed out")
    try:
        message = receive.recv() if receive.poll() else None
    except EOFError:  # the pipe closed unwritten: killed
        message = None
    if message is None:
        return Outcome(killed=True)
    return Outcome(killed=False, error=message[0], clear=message[1], seconds=message[2])


def run_child(
    work: Callable[..., None], *args: Any, kill_after: float | None = None, limit: int | None = None
) -> Outcome:
    return finish(*start(work, *args, limit=limit), kill_after=kill_after)


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` but lock files."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def leftovers(parent: Path, keep: tuple[str, ...]) -> list[str]:
    """Names in `parent` other than `keep` and lock files: temporaries a writer should have removed."""
    return sorted(p.name for p in parent.iterdir() if p.name not in keep and not p.name.endswith(".lock"))


# ---------------------------------------------------------------------------------------------------------------------
# The artifacts: each kind prepares references in `root`, and gives a writer and checks for a trial folder.


class Kind:
    """One artifact. `prepare` once; per trial: `reset(work)` puts the old artifact in place, `write(work, which)`
    (in a child) writes a new one, `state(work)` says which complete artifact the target holds ("old", "new", or a
    problem), `clean(work)` lists leftovers."""

    name = ""

    def prepare(self, root: Path) -> None:
        self.root = root

    def reset(self, work: Path) -> None:
        raise NotImplementedError

    def write(self, work: Path, which: str = "new") -> None:
        raise NotImplementedError

    def state(self, work: Path) -> str:
        raise NotImplementedError

    def clean(self, work: Path) -> list[str]:
        raise NotImplementedError


class FolderKind(Kind):
    """A folder written over an old one (save_pretrained, SAE save): judged by comparing every file with reference
    folders of the old and the new artifact."""

    target = "artifact"
    has_old = True

    def prepare(self, root: Path) -> None:
        super().prepare(root)
        self.reference: dict[str, dict[str, str]] = {}
        for which in ("old", "new"):
            folder = root / which
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            self.seed_folder(folder)
            if which == "new" and self.has_old:
                self.write(folder, "old")
            outcome = run_child(self.write, folder, which)
            assert outcome.error is None, outcome.error
            self.reference[which] = digest(folder / self.target)

    def seed_folder(self, work: Path) -> None:
        pass

    def reset(self, work: Path) -> None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(self.root / "old", work)

    def state(self, work: Path) -> str:
        target = work / self.target
        if not target.exists():
            return "absent"
        found = digest(target)
        for which, expected in self.reference.items():
            if found == expected:
                return which
        return f"a mix or a partial folder: {sorted(found)}"

    def clean(self, work: Path) -> list[str]:
        return leftovers(work, (self.target,))


class SaveKind(FolderKind):
    name = "save"
    target = "model"

    def prepare(self, root: Path) -> None:
        from tests.llama import tiny_llama

        self.models = {"old": tiny_llama(seed=1), "new": tiny_llama(seed=2)}
        super().prepare(root)

    def write(self, work: Path, which: str = "new") -> None:
        from hooked_bilinear.publishing.save import save_pretrained

        # many small shards: many files, so a kill lands between them
        save_pretrained(
            self.models[which], work / self.target, overwrite=True, max_shard_size="40KB", token_ids_only=True
        )


class SAEKind(FolderKind):
    name = "sae"
    target = "sae"

    def prepare(self, root: Path) -> None:
        from hooked_bilinear.sae.relu import ReLUSAE

        self.saes = {}
        for seed, which in enumerate(("old", "new")):
            sae = ReLUSAE(64, 2048, metadata={"hook_name": f"blocks.{seed}.hook_resid_post"})
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for parameter in sae.parameters():
                    parameter.copy_(torch.randn(parameter.shape, generator=generator))
            self.saes[which] = sae
        super().prepare(root)

    def seed_folder(self, work: Path) -> None:
        (work / self.target).mkdir()
        (work / self.target / "notes.txt").write_text("a file of the user's, kept across saves\n")

    def write(self, work: Path, which: str = "new") -> None:
        from hooked_bilinear.sae.format import save

        save(self.saes[which], work / self.target, overwrite=True)


class CorpusKind(Kind):
    """The tokenized corpus cache: content-addressed, so "old" is no cache file and "new" the reference tokens."""

    name = "corpus"

    def prepare(self, root: Path) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from tests.distributed_runs import TEXTS, tokenizer

        super().prepare(root)
        corpus = root / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        texts = [f"{TEXTS[i % len(TEXTS)]} ({i})" for i in range(N_DOCUMENTS)]
        pq.write_table(pa.table({"story": texts}), corpus / "stories.parquet")
        self.tokenizer = tokenizer()
        self.corpus_path = corpus / "stories.parquet"
        outcome = run_child(self.write, root / "reference")
        assert outcome.error is None, outcome.error
        (self.cache_file,) = (root / "reference" / "cache").glob("tokens-*.npy")
        self.tokens = np.load(self.cache_file)

    def reset(self, work: Path) -> None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)

    def write(self, work: Path, which: str = "new") -> None:
        import numpy as np

        from hooked_bilinear.making.corpus import Corpus, load_corpus

        tokens = load_corpus(Corpus(str(self.corpus_path), text_column="story"), self.tokenizer, work / "cache")
        if hasattr(self, "tokens") and not np.array_equal(tokens, self.tokens):
            raise AssertionError("load_corpus returned other tokens than the uninterrupted build")

    def state(self, work: Path) -> str:
        import numpy as np

        cache = work / "cache"
        files = sorted(cache.glob("tokens-*.npy")) if cache.exists() else []
        if not files:
            return "old"
        if [f.name for f in files] != [self.cache_file.name]:
            return f"unexpected cache files {[f.name for f in files]}"
        try:
            same = np.array_equal(np.load(files[0]), self.tokens)
        except (ValueError, OSError, EOFError) as error:
            return f"an unreadable cache file ({error})"
        return "new" if same else "a cache file with other tokens"

    def clean(self, work: Path) -> list[str]:
        cache = work / "cache"
        return leftovers(cache, (self.cache_file.name, "hf")) if cache.exists() else []


class TrainKind(Kind):
    """bilinearize with checkpoints every 2 steps: "old" is the state before the write (no checkpoint, or the prior
    one), "new" the uninterrupted run's final weights; a killed run must resume from `latest`."""

    name = "train"

    def prepare(self, root: Path) -> None:
        super().prepare(root)
        self.tokens = torch.randint(0, 330, (4000,), generator=torch.Generator().manual_seed(0))
        outcome = run_child(self.write, root / "reference")
        assert outcome.error is None, outcome.error
        self.result = torch.load(root / "reference" / "result.pt")
        self.prior = root / "prior"  # a run interrupted at step 5: its last checkpoint is step 4
        outcome = run_child(self.write, self.prior, "new", 5)
        assert outcome.error is not None and "KeyboardInterrupt" in outcome.error, outcome

    def reset(self, work: Path) -> None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)

    def reset_prior(self, work: Path) -> None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(self.prior, work)

    def write(self, work: Path, which: str = "new", crash_at: int | None = None) -> None:
        from hooked_bilinear.making import data as data_module
        from hooked_bilinear.making.bilinearize import bilinearize
        from tests.llama import tiny_llama

        resumed = []

        class Resumed(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "resuming" in record.getMessage():
                    resumed.append(record.args[1] if isinstance(record.args, tuple) else None)

        logger = logging.getLogger("hooked_bilinear.making.train")
        logger.setLevel(logging.INFO)
        logger.addHandler(Resumed())
        if crash_at is not None:
            real = data_module.PackedSequences.batch

            def batch(self: Any, step: int, *args: Any, **kwargs: Any) -> Any:
                if step == crash_at:
                    raise KeyboardInterrupt("simulated interruption")
                return real(self, step, *args, **kwargs)

            data_module.PackedSequences.batch = batch  # type: ignore[method-assign]
        work.mkdir(parents=True, exist_ok=True)
        model = bilinearize(tiny_llama("silu", std=0.05), self.tokens, checkpoint_dir=work / "checkpoints", **TRAIN)
        assert model is not None
        mine = work / f"result-{os.getpid()}.pt"  # two concurrent runs do not write one file
        torch.save({"state": model.state_dict(), "resumed_from": resumed[0] if resumed else 0}, mine)
        os.replace(mine, work / "result.pt")

    def latest(self, work: Path) -> int | None:
        """The step `latest` names, after checking that it is complete; None without one."""
        folder = work / "checkpoints"
        if not (folder / "latest").is_file():
            return None
        step_folder = folder / (folder / "latest").read_text().strip()
        progress = json.loads((step_folder / "progress.json").read_text())
        if not (step_folder / ".metadata").is_file() or step_folder.name != f"step-{progress['step']:08d}":
            raise AssertionError(f"latest names an incomplete checkpoint {step_folder}")
        return int(progress["step"])

    def state(self, work: Path) -> str:
        try:
            self.latest(work)
        except (AssertionError, OSError, ValueError) as error:
            return f"a broken checkpoint folder ({error})"
        return "old"  # judged by the rerun: it must resume from `latest` and end with the reference weights

    def judge_rerun(self, work: Path, expected_resume: int | None) -> list[str]:
        problems = []
        result = torch.load(work / "result.pt")
        different = [k for k, v in self.result["state"].items() if not torch.equal(v, result["state"][k])]
        if different:
            problems.append(f"the resumed run's weights differ from the uninterrupted run's in {different[:3]}")
        if result["resumed_from"] != (expected_resume or 0):
            problems.append(f"resumed from step {result['resumed_from']}, not from latest ({expected_resume})")
        return problems

    def clean(self, work: Path) -> list[str]:
        keep = ("latest", "metrics.csv", "loss_curve.png", f"step-{STEPS:08d}")
        return leftovers(work / "checkpoints", keep)


KINDS: dict[str, Callable[[], Kind]] = {"train": TrainKind, "save": SaveKind, "corpus": CorpusKind, "sae": SAEKind}


def prepare(root: Path, names: tuple[str, ...] = tuple(KINDS)) -> dict[str, Kind]:
    """Every artifact kind's references under `root`, and how long an uninterrupted write takes."""
    import datasets
    import transformers

    import hooked_bilinear.making.bilinearize
    import hooked_bilinear.making.corpus
    import hooked_bilinear.publishing.save
    import hooked_bilinear.sae.format  # noqa: F401  (imported once here, not in every child: kills land in the writes)

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    kinds = {}
    for name in names:
        kind = KINDS[name]()
        shutil.rmtree(root / name, ignore_errors=True)
        kind.prepare(root / name / "reference")
        work = root / name / "timing"
        kind.reset(work)
        outcome = run_child(kind.write, work)
        assert outcome.error is None, outcome.error
        kind.seconds = outcome.seconds  # type: ignore[attr-defined]  # the write alone: kills land within it
        kinds[name] = kind
    return kinds


def kill_trial(kind: Kind, work: Path, rng: random.Random) -> list[str]:
    """SIGKILL a write at a random moment; the target must be old or new complete; the rerun must give the new one
    and leave no leftovers."""
    kind.reset(work)
    outcome = run_child(kind.write, work, kill_after=rng.uniform(0.0, kind.seconds))  # type: ignore[attr-defined]
    kind.landed = getattr(kind, "landed", 0) + outcome.killed  # type: ignore[attr-defined]  # killed before the end
    problems = [f"the killed writer raised {outcome.error}"] if outcome.error else []
    state = kind.state(work)
    if state not in ("old", "new"):
        problems.append(f"after the kill the target is {state}")
    expected_resume = kind.latest(work) if isinstance(kind, TrainKind) and not problems else None
    problems += rerun(kind, work, expected_resume)
    if kind.clean(work):
        problems.append(f"leftovers after the rerun: {kind.clean(work)}")
    return problems


def rerun(kind: Kind, work: Path, expected_resume: int | None) -> list[str]:
    """Run the write again, uninterrupted: it must end with the new artifact (training: the reference weights,
    resumed from `expected_resume`)."""
    outcome = run_child(kind.write, work)
    if outcome.error:
        return [f"the rerun failed: {outcome.error}"]
    if isinstance(kind, TrainKind):
        return kind.judge_rerun(work, expected_resume)
    return [] if kind.state(work) == "new" else [f"after the rerun the target is {kind.state(work)}"]


def full_disk_trial(kind: Kind, work: Path, rng: random.Random) -> list[str]:
    """The write runs with every file capped below the size it needs: one clear error naming the target, the old
    artifact intact, nothing partial left that a load would take; the rerun then succeeds."""
    if isinstance(kind, TrainKind):
        kind.reset_prior(work)
        before = digest(work / "checkpoints" / "step-00000004")
        biggest = max(p.stat().st_size for p in (kind.root / "reference" / "checkpoints").rglob("*.distcp"))
    elif isinstance(kind, CorpusKind):  # datasets' arrow cache in place, so that the cap hits the token file
        kind.reset(work)
        shutil.copytree(kind.root / "reference" / "cache" / "hf", work / "cache" / "hf")
        before_state = kind.state(work)
        biggest = kind.cache_file.stat().st_size
    else:
        kind.reset(work)
        before_state = kind.state(work)
        biggest = max(p.stat().st_size for p in (kind.root / "new").rglob("*") if p.is_file() and ".lock" not in p.name)
    limit = rng.randint(1, biggest - 1)
    outcome = run_child(kind.write, work, limit=limit)
    problems = []
    if outcome.error is None or not outcome.clear:
        problems.append(
            f"with files capped at {limit} bytes the writer ended with {outcome.error!r}, not a clear error"
        )
    elif str(work) not in outcome.error or "nothing was left behind" not in outcome.error:
        problems.append(f"the error does not name the target: {outcome.error}")
    if isinstance(kind, TrainKind):
        if kind.latest(work) != 4 or digest(work / "checkpoints" / "step-00000004") != before:
            problems.append("the previous checkpoint (step 4) was not kept intact")
        partial = sorted(p.name for p in (work / "checkpoints").iterdir() if "partial" in p.name or ".tmp-" in p.name)
        if partial:
            problems.append(f"partial files left: {partial}")
        expected_resume: int | None = 4
    else:
        if kind.state(work) != before_state:
            problems.append(f"the old artifact was not kept: the target is {kind.state(work)}")
        if kind.clean(work):
            problems.append(f"partial files left: {kind.clean(work)}")
        expected_resume = None
    return problems + rerun(kind, work, expected_resume)


def concurrent_trial(kind: Kind, work: Path, rng: random.Random) -> list[str]:
    """Two writers of the same target at once (the second starting a random fraction of a write later): each finishes
    or gets a clear error, at least one finishes, and the target is one complete artifact."""
    kind.reset(work)
    if isinstance(kind, FolderKind):  # two different new artifacts race: old and new
        first = start(kind.write, work, "old")
    else:
        first = start(kind.write, work)
    time.sleep(rng.uniform(0.0, 0.5 * kind.seconds))  # type: ignore[attr-defined]
    second = start(kind.write, work)
    outcomes = [finish(*first), finish(*second)]
    problems = [f"a writer ended with an unclear error: {o.error}" for o in outcomes if o.error and not o.clear]
    if all(o.error for o in outcomes):
        problems.append(f"neither writer finished: {[o.error for o in outcomes]}")
    if isinstance(kind, TrainKind):
        result = torch.load(work / "result.pt")
        if any(not torch.equal(v, result["state"][k]) for k, v in kind.result["state"].items()):
            problems.append("a finished run's weights differ from the uninterrupted run's")
    elif kind.state(work) not in ("old", "new"):
        problems.append(f"the target is {kind.state(work)}")
    if kind.clean(work):
        problems.append(f"leftovers: {kind.clean(work)}")
    return problems


# ---------------------------------------------------------------------------------------------------------------------
# torchrun --max-restarts: a worker SIGKILLed mid-run, the group restarted, bilinearize resuming by itself.


def elastic_worker(out: Path, kill_step: int | None, kill_delay: float, kill_rank: int) -> None:
    """Under torchrun: bilinearize the tiny model on 2 gloo processes, first uninterrupted (out/reference.pt, once),
    then with checkpoints in out/checkpoints; on the first attempt, rank `kill_rank` SIGKILLs itself `kill_delay`
    seconds after step `kill_step` of the second run began (at the latest when it ends: the kill always lands).
    Rank 0 writes result.pt."""
    from hooked_bilinear.making import data as data_module
    from hooked_bilinear.making import distributed as distributed_
    from hooked_bilinear.making.bilinearize import bilinearize
    from tests.llama import tiny_llama

    torch.set_num_threads(1)
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    rank = int(os.environ.get("RANK", "0"))
    distributed_.init_from_env("cpu")  # the package's: a restarted group meets under its own store prefix
    real = data_module.PackedSequences.batch
    began: list[float] = []
    kill = threading.Timer(kill_delay, os.kill, (os.getpid(), signal.SIGKILL))
    armed = [False]

    def batch(self: Any, step: int, *args: Any, **kwargs: Any) -> Any:
        began.append(time.perf_counter()) if not began else None
        if armed[0] and step == kill_step:
            kill.start()
        return real(self, step, *args, **kwargs)

    data_module.PackedSequences.batch = batch  # type: ignore[method-assign]
    tokens = torch.randint(0, 330, (4000,), generator=torch.Generator().manual_seed(0))
    resumed = []

    class Resumed(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "resuming" in record.getMessage() and isinstance(record.args, tuple):
                resumed.append(record.args[1])

    logging.getLogger("hooked_bilinear.making.train").setLevel(logging.INFO)
    logging.getLogger("hooked_bilinear.making.train").addHandler(Resumed())
    if not (out / "reference.pt").is_file():  # the uninterrupted run on the same 2 processes
        model = bilinearize(tiny_llama("silu", std=0.05), tokens, checkpoint_dir=out / "uninterrupted", **TRAIN)
        if model is not None:
            seconds = time.perf_counter() - began[0]
            torch.save({"state": model.state_dict(), "train_seconds": seconds}, out / "reference.pt")
        distributed_.barrier()
    armed[0] = kill_step is not None and attempt == 0 and rank == kill_rank
    model = bilinearize(tiny_llama("silu", std=0.05), tokens, checkpoint_dir=out / "checkpoints", **TRAIN)
    if armed[0] and kill_step is not None:
        kill.join()  # the process dies here at the latest
    if model is not None:
        record = {"state": model.state_dict(), "attempt": attempt, "resumed_from": resumed[0] if resumed else 0}
        torch.save(record, out / "result.pt")
    sys.stdout.flush()
    os._exit(0)  # as the command line does under torchrun


def torchrun(
    out: Path, kill_step: int | None = None, kill_delay: float = 0.0, kill_rank: int = 0, timeout: float = 600
) -> dict[str, Any]:
    """One torchrun --standalone --nproc-per-node 2 --max-restarts 1 run of `elastic_worker` (from the repository
    root); its result.pt, or an "error" entry."""
    out.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "torchrun"),
        "--standalone",
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "1",
        "--monitor-interval",
        "0.2",
        "-m",
        "tests.fault_runs",
        str(out),
        "none" if kill_step is None else str(kill_step),
        str(kill_delay),
        str(kill_rank),
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        command, cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0 or not (out / "result.pt").is_file():
        return {"error": f"torchrun exited {done.returncode}: {done.stderr[-2000:]}"}
    return {**torch.load(out / "result.pt"), "reference": torch.load(out / "reference.pt")}


def restart_trial(work: Path, rng: random.Random, step_seconds: float = 0.5) -> list[str]:
    """A worker SIGKILLed at a random moment of training (a random step, plus up to two steps' time): torchrun
    restarts the group, which resumes from the last complete checkpoint and ends with the weights of the uninterrupted
    run on the same 2 processes (run first, in the same torchrun), bit for bit."""
    shutil.rmtree(work, ignore_errors=True)
    got = torchrun(work, rng.randrange(STEPS), rng.uniform(0.0, 2 * step_seconds), rng.randrange(2))
    if "error" in got:
        return [got["error"]]
    problems = []
    if got["resumed_from"] % TRAIN["checkpoint_every"]:
        problems.append(f"resumed from step {got['resumed_from']}, which is no checkpoint")
    RESUMED.append(got["resumed_from"])
    if got["attempt"] != 1:
        problems.append(f"finished on attempt {got['attempt']}, not on the restart")
    reference = got["reference"]["state"]
    different = [k for k, v in reference.items() if not torch.equal(v, got["state"][k])]
    if different:
        worst = max((reference[k] - got["state"][k]).abs().max().item() for k in different)
        problems.append(f"weights differ from the uninterrupted run's (max {worst:.3g}) in {different[:3]}")
    return problems


if __name__ == "__main__":  # the torchrun worker: python -m tests.fault_runs OUT KILL_STEP|none KILL_DELAY KILL_RANK
    import faulthandler

    faulthandler.register(signal.SIGUSR1)  # kill -USR1 PID prints where a worker is
    out, step, delay, rank = sys.argv[1:5]
    elastic_worker(Path(out), None if step == "none" else int(step), float(delay), int(rank))
