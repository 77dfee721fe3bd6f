"""Crash-safe writes (hooked_bilinear.atomic) and every writer under faults: SIGKILLed at seeded random moments,
starved by a full disk (RLIMIT_FSIZE), raced by a second writer. A few trials each here; scripts/fault_harness.py
runs the full count (docs/fault-tolerance.md)."""

from __future__ import annotations

import errno
import io
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hooked_bilinear import atomic
from hooked_bilinear.errors import WriteError
from tests import fault_runs


def test_write_file_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "data.txt"
    atomic.write_text(target, "old")

    def fail(path: Path) -> None:
        path.write_text("half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match=r"writing .*data.txt failed: the disk is full; nothing was left behind"):
        atomic.write_file(target, fail)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["data.txt"]


def test_replace_folder_exchanges_and_cleans(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "a").write_text("old")
    new = atomic.temporary_folder(target)
    (new / "b").write_text("new")
    atomic.replace_folder(new, target)
    assert [p.name for p in target.iterdir()] == ["b"] and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_held_lock_refuses_or_waits(tmp_path):
    target = tmp_path / "run"
    process, receive = fault_runs.start(_hold, target)
    time.sleep(0.5)  # the child holds the lock for a second
    with pytest.raises(WriteError, match="another process is writing .*run"):
        with atomic.locked(target, wait=False):
            pass
    began = time.perf_counter()
    with atomic.locked(target):  # waits for the child to let go
        assert time.perf_counter() - began > 0.2
    assert fault_runs.finish(process, receive).error is None


def _hold(target: Path) -> None:
    with atomic.locked(target):
        time.sleep(1.0)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    return fault_runs.prepare(tmp_path_factory.mktemp("faults"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(fault_runs.KINDS))
def test_killed_at_random_moments(kinds, tmp_path, name):
    """SIGKILL at seeded moments (2; training 1): the target is the old or the new artifact, the rerun gives the
    uninterrupted result (training: resumed from `latest`, bit-identical) and leaves no temporaries."""
    rng = random.Random(f"kill {name}")
    for trial in range(1 if name == "train" else 2):
        assert fault_runs.kill_trial(kinds[name], tmp_path / str(trial), rng) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", list(fault_runs.KINDS))
def test_a_full_disk_is_one_clear_error(kinds, tmp_path, name):
    """Every file capped below what the write needs: one error naming the target, the old artifact intact, nothing
    partial; the rerun succeeds."""
    assert fault_runs.full_disk_trial(kinds[name], tmp_path, random.Random(f"disk {name}")) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", list(fault_runs.KINDS))
def test_two_writers_at_once(kinds, tmp_path, name):
    """Two processes write the same target together: one complete artifact, and each finishes or errs clearly."""
    assert fault_runs.concurrent_trial(kinds[name], tmp_path, random.Random(f"race {name}")) == []


# ---------------------------------------------------------------------------------------------------------------------
# Deterministic faults for the two mechanisms a random kill rarely reaches: the corpus cache's final write (it takes
# microseconds) and the locks (the atomic rename alone keeps two racing writers consistent, so `concurrent` passes
# without them). Each test fails with its mechanism removed (docs/fault-tolerance.md).


def _text_corpus(folder: Path, documents: int) -> Path:
    from tests.distributed_runs import TEXTS

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "stories.txt"
    path.write_text("".join(f"{TEXTS[i % len(TEXTS)]} ({i})\n" for i in range(documents)))
    return path


def test_a_failed_corpus_cache_write_leaves_nothing_a_load_would_take(tmp_path, monkeypatch):
    """The final save of the token cache fails half-way (ENOSPC after half the bytes): one WriteError naming the cache
    file, the cache of another corpus in the same folder intact, no partial `tokens-*.npy` (which a later load would
    take as built: the cache is skipped when its file exists), no temporary; the rerun builds the complete cache."""
    import numpy as np

    from hooked_bilinear.making.corpus import Corpus, load_corpus
    from tests.distributed_runs import tokenizer

    tok = tokenizer()
    cache = tmp_path / "cache"
    previous = Corpus(str(_text_corpus(tmp_path / "previous", 40)))
    before = np.array(load_corpus(previous, tok, cache))
    (previous_file,) = cache.glob("tokens-*.npy")
    corpus = Corpus(str(_text_corpus(tmp_path / "new", 60)))
    expected = np.array(load_corpus(corpus, tok, tmp_path / "reference"))
    (expected_file,) = (tmp_path / "reference").glob("tokens-*.npy")

    real_save = np.save

    def half_then_full_disk(file: Any, array: Any, *args: Any, **kwargs: Any) -> None:
        if "-part" in str(getattr(file, "name", file)):  # a rank's share: written whole
            return real_save(file, array, *args, **kwargs)
        whole = io.BytesIO()
        real_save(whole, array, *args, **kwargs)
        data = whole.getvalue()
        opened = open(file, "wb") if isinstance(file, (str, os.PathLike)) else None  # noqa: SIM115
        target = opened or file
        target.write(data[: len(data) // 2])
        target.flush()
        if opened is not None:
            opened.close()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", half_then_full_disk)
    with pytest.raises(WriteError, match=rf"writing .*{expected_file.name} failed: the disk is full"):
        load_corpus(corpus, tok, cache)
    monkeypatch.undo()

    assert sorted(p.name for p in cache.glob("tokens-*.npy")) == [previous_file.name]
    assert fault_runs.leftovers(cache, (previous_file.name, "hf")) == []
    assert np.array_equal(load_corpus(previous, tok, cache), before)
    assert np.array_equal(load_corpus(corpus, tok, cache), expected)  # the rerun builds it whole
    assert sorted(p.name for p in cache.glob("tokens-*.npy")) == sorted([previous_file.name, expected_file.name])
    assert fault_runs.leftovers(cache, (previous_file.name, expected_file.name, "hf")) == []


def _writer_waits_on_lock(
    target: Path, write: Callable[[], object], monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Thread, list[Any]]:
    """Start `write` in a thread while this thread holds `target`'s lock; return once the writer is blocked on the
    lock (or has finished: a writer that takes no lock). Gives the thread and the list its result or error goes in."""
    import fcntl

    lock_file = target.parent / f".{target.name}.lock"
    asked = threading.Event()
    real_flock = fcntl.flock

    def spy(fd: Any, operation: int) -> Any:
        if threading.current_thread() is not threading.main_thread():
            if os.path.samefile(f"/proc/self/fd/{fd if isinstance(fd, int) else fd.fileno()}", lock_file):
                asked.set()
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", spy)
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(write())
        except BaseException as error:  # reported to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not asked.is_set() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # a writer that did not wait would now be writing
    return thread, outcome


def test_save_pretrained_waits_for_the_lock_and_leaves_a_live_writers_files(tmp_path, monkeypatch):
    """A writer holds the folder's lock, its hidden temporary folder half built: a second save_pretrained waits on the
    lock without touching the folder or deleting that temporary (which it would take for a killed writer's), then
    replaces the folder whole once the lock is released."""
    from hooked_bilinear.publishing.save import save_pretrained
    from tests.llama import tiny_llama

    folder = tmp_path / "model"
    save_pretrained(tiny_llama(seed=1), folder, token_ids_only=True)
    old = fault_runs.digest(folder)
    new_model = tiny_llama(seed=2)
    with atomic.locked(folder):
        live = atomic.temporary_folder(folder)  # the lock holder's half-written next version
        (live / "config.json").write_text("{}")
        thread, outcome = _writer_waits_on_lock(
            folder, lambda: save_pretrained(new_model, folder, overwrite=True, token_ids_only=True), monkeypatch
        )
        assert fault_runs.leftovers(tmp_path, ("model",)) == [live.name]  # nothing of its own, ours untouched
        assert fault_runs.digest(folder) == old, "the second writer replaced the folder while the lock was held"
        assert thread.is_alive(), f"the second writer did not wait for the lock: {outcome}"
        shutil.rmtree(live)  # the holder finishes (here: gives up) and lets go
    thread.join(60)
    assert outcome and not isinstance(outcome[0], BaseException), outcome
    reference = tmp_path / "reference"
    save_pretrained(new_model, reference, name="model", token_ids_only=True)
    assert fault_runs.digest(folder) == fault_runs.digest(reference)
    assert fault_runs.leftovers(tmp_path, ("model", "reference")) == []


def test_a_corpus_build_waits_for_the_lock_then_reads_the_holders_cache(tmp_path, monkeypatch):
    """A build holds the cache file's lock, a rank's part file written: a second load_corpus waits without tokenizing
    or deleting that part, then reads the holder's cache file instead of building its own."""
    import numpy as np

    from hooked_bilinear.making.corpus import Corpus, load_corpus
    from tests.distributed_runs import tokenizer

    tok = tokenizer()
    corpus = Corpus(str(_text_corpus(tmp_path / "corpus", 60)))
    expected = np.array(load_corpus(corpus, tok, tmp_path / "reference"))
    (reference_file,) = (tmp_path / "reference").glob("tokens-*.npy")
    cache = tmp_path / "cache"
    final = cache / reference_file.name
    with atomic.locked(final):
        part = final.with_name(f".{final.name}.tmp-part0-of-1.npy")  # the holder's work in progress
        shutil.copyfile(reference_file, part)
        thread, outcome = _writer_waits_on_lock(final, lambda: np.array(load_corpus(corpus, tok, cache)), monkeypatch)
        assert part.is_file(), "the second build deleted the holder's part file"
        assert not final.exists() and not (cache / "hf").exists(), "the second build tokenized while the lock was held"
        assert thread.is_alive(), f"the second build did not wait for the lock: {outcome}"
        os.replace(part, final)  # the holder's cache is complete
    thread.join(60)
    assert outcome and np.array_equal(outcome[0], expected), outcome
    assert not (cache / "hf").exists()  # read the holder's file, tokenized nothing
    assert fault_runs.leftovers(cache, (final.name,)) == []
