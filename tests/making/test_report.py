"""Reports: metrics.csv always (rewritten from the checkpoint's history on resume), a loss-curve PNG, and clear errors
for --report-to targets that are unknown or not installed."""

from __future__ import annotations

import importlib.util

import pytest

from hooked_bilinear.errors import HookedBilinearError
from hooked_bilinear.making.report import RunLog, check_reporters


def test_unknown_or_missing_reporters_are_named(monkeypatch):
    with pytest.raises(HookedBilinearError, match="'mlflow' is not one of"):
        check_reporters(["mlflow"])
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("tensorboard", "wandb") else real(name, *a)
    )
    for name in ("tensorboard", "wandb"):
        with pytest.raises(HookedBilinearError, match=f"--report-to {name} needs the {name} package.*pip install"):
            check_reporters([name])


def test_csv_and_loss_curve(tmp_path):
    rows = [
        {"step": s, "loss": 5.0 / s, "beta": max(0.0, 1 - s / 6), "lr": 1e-4, "tokens": 32 * s} for s in range(1, 11)
    ]
    log = RunLog(tmp_path, [], (), {}, enabled=True)
    for row in rows:
        log.log(row)
    png = log.close("test run")
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,loss,beta,lr,tokens" and len(lines) == 11 and lines[3].startswith("3,1.666")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    # Resuming from the checkpoint of step 4 drops rows 5..10 written after it, then continues.
    resumed = RunLog(tmp_path, rows[:4], (), {}, enabled=True)
    resumed.log(rows[4])
    resumed.close("test run")
    assert (tmp_path / "metrics.csv").read_text().splitlines() == lines[:6]
    # Ranks other than 0 write nothing.
    other = RunLog(tmp_path / "rank1", [], (), {}, enabled=False)
    other.log(rows[0])
    assert other.close("x") is None and not (tmp_path / "rank1").exists()


def test_tensorboard_receives_every_figure(tmp_path, monkeypatch):
    """The TensorBoard wiring, with a recording SummaryWriter in place of the real one (not installed here)."""
    import sys
    import types

    calls: list[tuple] = []

    class Recorder:
        def __init__(self, logdir):
            calls.append(("init", logdir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Recorder))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "tensorboard" else real(name, *a)
    )
    log = RunLog(tmp_path, [], ("tensorboard",), {}, enabled=True)
    log.log({"step": 1, "loss": 2.5, "beta": 1.0})
    log.close("x")
    assert calls == [
        ("init", str(tmp_path / "tensorboard")),
        ("train/loss", 2.5, 1),
        ("train/beta", 1.0, 1),
        ("close",),
    ]


def test_wandb_offline_run(tmp_path, monkeypatch):
    """Weights & Biases (a dependency of transformer-lens, so installed) in offline mode: the run is written locally."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = RunLog(tmp_path, [], ("wandb",), {"lr": 1e-4}, enabled=True)
    for step in range(1, 4):
        log.log({"step": step, "loss": 3.0 / step, "beta": 1 - step / 3})
    log.close("x")
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(run.glob("run-*.wandb"))[0].stat().st_size > 0
