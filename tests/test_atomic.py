"""Crash-safe writes (hooked_bilinear.atomic) and every writer under faults: SIGKILLed at seeded random moments,
starved by a full disk (RLIMIT_FSIZE), raced by a second writer. A few trials each here; scripts/fault_harness.py
runs the full count (docs/fault-tolerance.md)."""

from __future__ import annotations

import errno
import random
import time
from pathlib import Path

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
