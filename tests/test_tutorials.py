"""Every tutorial runs offline, end to end, and writes its pictures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parent.parent / "tutorials").glob("*.py"))


def check_weight_analysis(out: str) -> None:
    """Truncation is measured on held-out text: the original model is the best, truncating more costs more, and the
    two disjoint halves agree (on the model's own greedy continuations the truncated MLP scored better than the
    original, which says nothing)."""
    tokens = int(re.search(r"truncation on (\d+) held-out tokens", out).group(1))
    assert tokens >= 16384
    rows = re.findall(r"keep +(\d+) per direction: loss ([\d.]+) \(original ([\d.]+)", out)
    losses = [float(loss) for _, loss, _ in rows]
    original = float(rows[0][2])
    assert abs(original - 0.463) < 0.02, "held-out loss far from the checkpoint's validation loss"
    assert losses[0] > original + 0.1 and all(loss >= original - 0.002 for loss in losses)
    assert losses == sorted(losses, reverse=True)
    spread = float(re.search(r"differ by at most ([\d.]+) nats", out).group(1))
    assert spread < 0.02


CHECKS = {"weight_analysis": check_weight_analysis}


@pytest.mark.parametrize("script", TUTORIALS, ids=[s.stem for s in TUTORIALS])
def test_tutorial_runs(script, tmp_path):
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(tmp_path.glob("*.png")), "the tutorial drew no picture"
    assert "Traceback" not in done.stderr
    CHECKS.get(script.stem, lambda out: None)(done.stdout)
