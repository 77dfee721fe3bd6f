"""README.md, the front page: at most 250 lines, its test command is the one CI runs, and its Python examples run
as written (on the shipped checkpoint; the upload to the Hub is recorded instead of sent)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest

import hooked_bilinear

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_is_a_front_page() -> None:
    assert README.count("\n") <= 250
    command = "bash scripts/setup.sh && .venv/bin/python -m pytest -q"
    assert command in README and command in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 3
    uploads: list[tuple[Any, str]] = []
    monkeypatch.setattr(hooked_bilinear, "push_to_hub", lambda model, repo_id, **_: uploads.append((model, repo_id)))
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in blocks:  # one session, as a reader runs them in turn
            exec(compile(block, "README.md", "exec"), scope)
    assert scope["result"].shape[0] == scope["model"].cfg.n_layers  # the patching result, per layer and position
    assert scope["eig"].lambda_.shape == (8,)
    assert (tmp_path / "ts-llama" / "model.safetensors").is_file()
    assert uploads == [(scope["model"], "me/ts-llama")]
