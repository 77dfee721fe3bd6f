"""push_to_hub end to end against a Hub-compatible HTTP endpoint on loopback (HfApi(endpoint=...) and HF_ENDPOINT),
and each failure (repo exists, auth refused, endpoint refuses or times out, offline) a clear error keeping the local
copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import constants

import hooked_bilinear as hb
from hooked_bilinear.cli import main
from hooked_bilinear.publishing.hub import push_folder_to_hub
from tests.llama import tiny_llama, write_llama
from tests.publishing.hub_server import FakeHub
from tests.reference import EMBEDDED


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """The suite runs with HF_HUB_OFFLINE=1 (no test reaches the internet); these tests reach loopback only."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_upload_end_to_end(tmp_path, converted):
    llama, tokenizer = converted
    with FakeHub(token="secret") as hub:
        url = hb.push_to_hub(
            llama,
            "alice/ts-llama",
            tokenizer=tokenizer,
            local_dir=tmp_path / "local",
            token="secret",
            endpoint=hub.endpoint,
        )
        assert url.startswith(f"{hub.endpoint}/alice/ts-llama/commit/")
        assert hub.repos["alice/ts-llama"] == files_of(tmp_path / "local")  # every file, byte for byte
        assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= set(hub.repos["alice/ts-llama"])
        meta = hub.metadata[-1]
        assert meta["library_name"] == "transformers" and "bilinear" in meta["tags"]
        assert len(hub.commits) == 1


def test_existing_repo_needs_overwrite(tmp_path):
    with FakeHub() as hub:
        hb.push_to_hub(tiny_llama(seed=1), "alice/m", local_dir=tmp_path / "a", endpoint=hub.endpoint)
        first = dict(hub.repos["alice/m"])
        with pytest.raises(hb.PublishError, match="already exists.*overwrite=True"):
            hb.push_to_hub(tiny_llama(seed=2), "alice/m", local_dir=tmp_path / "b", endpoint=hub.endpoint)
        assert hub.repos["alice/m"] == first and len(hub.commits) == 1
        assert (tmp_path / "b" / "model.safetensors").is_file()  # the local copy is kept
        hb.push_to_hub(tiny_llama(seed=2), "alice/m", local_dir=tmp_path / "c", endpoint=hub.endpoint, overwrite=True)
        assert hub.repos["alice/m"]["model.safetensors"] == (tmp_path / "c" / "model.safetensors").read_bytes()
        assert len(hub.commits) == 2


def test_auth_failure_keeps_local_copy(tmp_path):
    with FakeHub(token="secret") as hub:
        with pytest.raises(hb.PublishError, match="refused the credentials.*401.*kept"):
            hb.push_to_hub(tiny_llama(), "alice/m", local_dir=tmp_path / "local", token="wrong", endpoint=hub.endpoint)
        assert hub.repos == {}
    assert (tmp_path / "local" / "model.safetensors").is_file() and (tmp_path / "local" / "README.md").is_file()


def test_refused_connection_keeps_local_copy(tmp_path):
    with FakeHub() as hub:
        endpoint = hub.endpoint  # the server is shut down on leaving the block: its port refuses connections
    with pytest.raises(hb.PublishError, match="could not be reached.*kept"):
        hb.push_to_hub(tiny_llama(), "alice/m", local_dir=tmp_path / "local", endpoint=endpoint)
    assert (tmp_path / "local" / "model.safetensors").is_file()


def test_timeout_is_reported_and_keeps_local_copy(tmp_path):
    with FakeHub(hang_s=30) as hub:
        start = time.monotonic()
        with pytest.raises(hb.PublishError, match="did not finish the upload within 1 s.*kept"):
            hb.push_to_hub(tiny_llama(), "alice/m", local_dir=tmp_path / "local", endpoint=hub.endpoint, timeout=1)
        assert time.monotonic() - start < 10
    assert (tmp_path / "local" / "model.safetensors").is_file()


def test_offline_mode_and_bad_repo_id(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hb.PublishError, match="HF_HUB_OFFLINE"):
        hb.push_to_hub(tiny_llama(), "alice/m", local_dir=tmp_path / "local", endpoint="http://127.0.0.1:9")
    assert (tmp_path / "local" / "model.safetensors").is_file()
    with pytest.raises(hb.PublishError, match="owner"):
        hb.push_to_hub(tiny_llama(), "no-owner", local_dir=tmp_path / "other")


PUSH_WITH_ENV = """
import sys
import hooked_bilinear as hb
from tests.llama import tiny_llama
print(hb.push_to_hub(tiny_llama(), sys.argv[1], local_dir=sys.argv[2]))
"""


def test_hf_endpoint_environment_variable(tmp_path):
    with FakeHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "home")}
        result = subprocess.run(
            [sys.executable, "-c", PUSH_WITH_ENV, "bob/env", str(tmp_path / "local")],
            cwd=Path(__file__).parents[2],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert hub.endpoint in result.stdout
        assert hub.repos["bob/env"] == files_of(tmp_path / "local")


def _not_loading(folder: Path) -> Path:
    """A folder with config.json and weights whose shapes do not fit it."""
    write_llama(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 32}))
    return folder


BAD_PUSHES = {
    "missing folder": (lambda tmp: tmp / "missing", "alice/m", "does not exist"),
    "empty folder": (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "alice/m", "holds no model"),
    "folder that does not load": (lambda tmp: _not_loading(tmp / "broken"), "alice/m", "does not load"),
    "repo id without owner": (lambda tmp: write_llama(tmp / "good")[0], "no-owner", "needs an owner"),
}


@pytest.mark.parametrize("case", BAD_PUSHES, ids=list(BAD_PUSHES))
def test_bad_push_is_refused_before_anything_remote(tmp_path, case, capsys):
    make, repo_id, message = BAD_PUSHES[case]
    folder = make(tmp_path)
    with FakeHub() as hub:
        with pytest.raises(hb.PublishError, match=message):
            push_folder_to_hub(folder, repo_id, endpoint=hub.endpoint)
        assert main(["push", str(folder), repo_id, "--endpoint", hub.endpoint]) == 1
        err = capsys.readouterr().err
        assert err.startswith("hooked-bilinear push: error:") and message in err and err.count("\n") == 1
        assert hub.requests == [] and hub.repos == {}  # nothing asked of the Hub, no repo created


def test_push_by_name_and_cli_errors_name_flags(tmp_path, capsys):
    with FakeHub() as hub:
        url = hb.push_to_hub(EMBEDDED, "alice/ts", local_dir=tmp_path / "local", endpoint=hub.endpoint)
        assert url.startswith(f"{hub.endpoint}/alice/ts/commit/")
        files = hub.repos["alice/ts"]
        assert json.loads(files["config.json"])["model_type"] == "llama" and "tokenizer.json" in files
        assert main(["push", str(tmp_path / "local"), "alice/ts", "--endpoint", hub.endpoint]) == 1
        err = capsys.readouterr().err
        assert "pass --overwrite to" in err and "overwrite=True" not in err
        assert main(["push", str(tmp_path / "local"), "alice/ts", "--endpoint", hub.endpoint, "--overwrite"]) == 0
        assert len(hub.commits) == 2
    with pytest.raises(hb.PublishError, match="overwrite=True"):  # the Python API still speaks keyword arguments
        hb.save_pretrained(EMBEDDED, tmp_path / "local")


def test_push_of_a_processed_bridge_needs_the_flag_and_asks_nothing_remote(tmp_path):
    bridge = hb.from_pretrained(EMBEDDED)
    bridge.enable_compatibility_mode()
    with FakeHub() as hub:
        with pytest.raises(hb.ConversionError, match="weight processing.*processed_weights=True"):
            hb.push_to_hub(bridge, "alice/processed", local_dir=tmp_path / "local", endpoint=hub.endpoint)
        assert hub.requests == [] and not (tmp_path / "local").exists()
        hb.push_to_hub(
            bridge, "alice/processed", local_dir=tmp_path / "local", endpoint=hub.endpoint, processed_weights=True
        )
        assert b"TransformerLens-processed weights" in hub.repos["alice/processed"]["README.md"]
