"""Crash-safe writes: every artifact this package writes appears whole or not at all.

The pattern, for a file or a folder: write a hidden sibling (`.NAME.tmp-XXXX`, same filesystem), fsync it, then
rename it over the target in one step (`os.replace` for a file; for a folder an atomic exchange, `renameat2`'s
RENAME_EXCHANGE on Linux, so the target is never missing), and fsync the parent folder so the rename itself survives
a power cut. A process killed at any point leaves the old artifact or the new one, plus perhaps a hidden sibling that
no loader reads and the next write to the same target removes. A failed write (ENOSPC, EFBIG, EACCES, ...) removes
its temporary and raises one `WriteError` naming the target. Writers to the same target take a lock file
(`.NAME.lock`, fcntl.flock) so that two processes never interleave; the kernel drops the lock when its holder dies.

Other modules adopt it with `write_file` (a callback writes the temporary path), `write_text`, `temporary_folder` +
`replace_folder`, and `locked`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from hooked_bilinear.errors import WriteError

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # what a full disk (or a file size limit) raises
_SHORT_WRITE = ("requested and", "unexpected pos")
_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file is larger than this process may write (RLIMIT_FSIZE / filesystem limit)",
    errno.EACCES: "permission denied",
    errno.EROFS: "the filesystem is read-only",
}


def os_error_in(error: BaseException) -> OSError | None:
    """The OSError behind a failure, or None: the error itself, its causes, the per-rank failures of a DCP
    CheckpointException, or the "(os error N)" of a safetensors SafetensorError (which carries no errno)."""
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, OSError):
            return current
        found = re.search(r"\(os error (\d+)\)", str(current)) if type(current).__name__ == "SafetensorError" else None
        if found:
            code = int(found.group(1))
            return OSError(code, os.strerror(code))
        failures = getattr(current, "failures", None)
        if isinstance(failures, dict):
            pending.extend(e for e in failures.values() if isinstance(e, BaseException))
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def write_error(target: Path, error: BaseException) -> WriteError:
    """The one error a failed write raises: the target, why (disk full, file too big, ...), and that the previous
    artifact, if any, is intact."""
    cause = os_error_in(error) or error
    code = getattr(cause, "errno", None)
    if code is not None:
        reason = _REASONS.get(code, f"{type(cause).__name__}: {cause}")
    else:  # the last line: DCP's CheckpointException carries each rank's whole traceback
        reason = ([line.strip() for line in str(cause).splitlines() if line.strip()] or [type(cause).__name__])[-1]
        if any(sign in reason for sign in _SHORT_WRITE):  # numpy's and torch.save's report of a full disk
            reason = f"a short write ({reason}): the disk is probably full"
    advice = (
        f"cannot write to {target.parent}: choose a writable folder"
        if code in (errno.EACCES, errno.EPERM, errno.EROFS)
        else "free space (or raise the limit) and run again"
    )
    return WriteError(
        f"writing {target} failed: {reason}; nothing was left behind (no partial file), and the previous "
        f"{target.name}, if there was one, is intact; {advice}."
    )


def fsync_dir(folder: Path) -> None:
    """Make the entries of `folder` (renames, new files) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder` (itself included), files first."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(Path(root) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def _hidden(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-"


def remove_leftovers(target: Path) -> None:
    """Delete the hidden temporaries a killed writer of `target` left (call it holding `locked(target)`)."""
    for kind in ("tmp", "old"):
        for stale in target.parent.glob(_hidden(target, kind) + "*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def write_file(target: Path, write: Callable[[Path], object]) -> Path:
    """Write `target` atomically: `write(path)` fills a temporary sibling, which is fsynced and renamed over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=_hidden(target, "tmp"))
    os.close(fd)
    temporary = Path(name)
    try:
        write(temporary)
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
        fsync_dir(target.parent)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if not isinstance(error, WriteError) and os_error_in(error) is not None:
            raise write_error(target, error) from error
        raise
    return target


def write_text(target: Path, text: str) -> Path:
    """`target.write_text(text)`, atomically (see `write_file`)."""
    return write_file(target, lambda path: path.write_text(text))


def temporary_folder(target: Path) -> Path:
    """A new empty hidden sibling folder of `target` to build its next version in (then `replace_folder`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=_hidden(target, "tmp")))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a filesystem or kernel without it
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_folder(partial: Path, target: Path) -> None:
    """fsync the complete folder `partial` and put it in `target`'s place; the old `target` is deleted afterwards.
    With an existing target the two are exchanged atomically where the system can (Linux); elsewhere the old one is
    first renamed to a hidden sibling, so a kill between the two renames leaves `target` missing and the old version
    in `.NAME.old-*` (not covered: see docs/fault-tolerance.md)."""
    fsync_tree(partial)
    if not target.exists():
        os.rename(partial, target)
    elif _exchange(partial, target):
        shutil.rmtree(partial)  # now the old version
    else:
        backup = Path(tempfile.mkdtemp(dir=target.parent, prefix=_hidden(target, "old")))
        os.rename(target, backup / target.name)
        try:
            os.rename(partial, target)
        except OSError:
            os.rename(backup / target.name, target)
            raise
        shutil.rmtree(backup)
    fsync_dir(target.parent)


@contextlib.contextmanager
def locked(target: Path, wait: bool = True, what: str = "writing") -> Iterator[None]:
    """Hold the lock file `.NAME.lock` beside `target` (fcntl.flock): other processes that write `target` wait
    (`wait`) or get a WriteError saying another process is `what` it. The lock file itself is left in place (deleting
    it would race with a waiting process); the kernel releases the lock when the holder exits or is killed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as error:
            raise WriteError(
                f"another process is {what} {target} (it holds {target.parent / f'.{target.name}.lock'}); wait for "
                f"it to finish, or use another folder."
            ) from error
        yield
    finally:
        os.close(fd)  # closing releases the lock
