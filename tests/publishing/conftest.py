"""Fixtures for publishing: a model to publish, a folder that cannot be written."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

import hooked_bilinear as hb
from tests.reference import EMBEDDED


@pytest.fixture(scope="session")
def converted():
    """The embedded tdooms checkpoint converted to a LlamaForCausalLM, and its tokenizer."""
    return hb.to_llama(EMBEDDED), hb.from_pretrained(EMBEDDED).tokenizer


def _writable(folder: Path) -> bool:
    probe = folder / f"probe-{uuid.uuid4().hex}"
    try:
        probe.mkdir()
    except OSError:
        return False
    probe.rmdir()
    return True


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be created in: chmod 555, or (as root, which ignores modes) a read-only system path."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    candidates = [folder, Path("/sys"), Path("/proc/sys")]
    try:
        yield next(c for c in candidates if c.is_dir() and not _writable(c))
    except StopIteration:
        pytest.fail(f"no unwritable directory among {candidates} on this machine")
    finally:
        os.chmod(folder, stat.S_IRWXU)
