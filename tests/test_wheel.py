"""The package works when installed as a wheel: `python -m build --wheel` holds the shipped checkpoints, their
tokenizer files and the shipped SAEs, and the wheel alone, installed into a fresh virtual environment outside the
clone, runs the quickstart from a folder with no clone on `sys.path`.

The fresh environment gets its dependencies (torch, transformers, ...) from this one's site-packages through a .pth
file instead of downloading them (tests never touch the network); the clone's editable install is not among them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "src" / "hooked_bilinear" / "checkpoints"


def run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the source is copied first: building in place would leave build/ and egg-info behind in the clone
    source = tmp_path_factory.mktemp("source")
    # (without the editable install's egg-info, whose file list would stand in for pyproject.toml's package data)
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)])
    (built,) = out.glob("hooked_bilinear-*.whl")
    return built


def test_the_wheel_holds_every_shipped_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = [path for path in SHIPPED.rglob("*") if path.is_file()]
    assert len(shipped) >= 30
    missing = [str(path.relative_to(SHIPPED)) for path in shipped]
    missing = [name for name in missing if f"hooked_bilinear/checkpoints/{name}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    for needed in (
        "ts-synthetic-2l/tokenizer.json",
        "ts-synthetic-2l/model.safetensors",
        "saes/ts-synthetic-2l/blocks.1.mlp.hook_in/sae_weights.safetensors",
        "vision/digits/model.safetensors",
        "modadd-p59/model.safetensors",
    ):
        assert f"hooked_bilinear/checkpoints/{needed}" in names, needed


def test_the_wheel_alone_runs_the_quickstart(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    with zipfile.ZipFile(wheel) as archive:  # a wheel's install is its files in site-packages, nothing to build
        archive.extractall(purelib)
    (purelib / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = shutil.copy(ROOT / "tutorials" / "quickstart.py", work / "quickstart.py")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    where = run(
        [str(python), "-c", "import hooked_bilinear, sys; print(hooked_bilinear.__file__); print(sys.path)"],
        cwd=work,
        env=env,
    )
    location, path = where.stdout.splitlines()
    assert Path(location).is_relative_to(purelib), location
    clone = {str(ROOT), str(ROOT / "src"), str(ROOT / "tutorials")}
    assert not clone & set(eval(path)), f"the clone is on sys.path: {path}"
    done = run([str(python), str(script), "--out", str(work / "out")], cwd=work, env=env)
    assert "hook_post == hook_pre * hook_pre_linear: True" in done.stdout
    assert "modadd-p59: accuracy on all 59^2 inputs 1.00000; proven from the weights 1.00000" in done.stdout
    assert (work / "out" / "patching_resid_pre.png").stat().st_size > 0
