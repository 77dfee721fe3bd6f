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


def _number(pattern: str, out: str) -> float:
    found = re.search(pattern, out)
    assert found, f"the tutorial no longer prints {pattern!r}"
    return float(found.group(1))


def check_quickstart(out: str) -> None:
    """The hooks multiply out, patching the embedding at the changed position restores the clean logit difference
    exactly (and nowhere else), and the shipped modular-addition model is proven correct below brute force's cost."""
    assert "hook_post == hook_pre * hook_pre_linear: True" in out
    clean = _number(r"logit\(cat\) - logit\(dog\): clean ([+-][\d.]+)", out)
    corrupted = _number(r"logit\(cat\) - logit\(dog\): clean [+-][\d.]+, corrupted ([+-][\d.]+)", out)
    assert clean > 5 and corrupted < -5
    assert _number(r"largest recovery ([+-][\d.]+) at layer 0", out) == clean
    assert _number(r"layer 0: pos \d+ ([+-][\d.]+)", out) == clean
    assert _number(r"layer 0: pos \d+ [+-][\d.]+ +last ([+-][\d.]+)", out) == corrupted
    assert _number(r"modadd-p59: accuracy on all 59\^2 inputs ([\d.]+)", out) == 1.0
    assert _number(r"proven from the weights ([\d.]+)", out) == 1.0
    assert _number(r"at ([\d.]+)x the cost of brute force", out) < 0.2


def check_modular_addition(out: str) -> None:
    """The shipped p = 59 model: correct everywhere; the same key frequencies from the weights, the activations and
    the logits; the cos(w(a + b - c)) identity per frequency; a sound, positive certificate proving every input at
    about a tenth of brute force's cost, the compression alone from the key frequencies on."""
    assert _number(r"accuracy on all 59\^2 inputs \(hooked model\): ([\d.]+)", out) == 1.0
    sources = dict(re.findall(r"from the ([\w' ]+?)(?: \(a \+ b\))?: +\[([\d, ]+)\]", out))
    weights, activations, logits = (
        {int(k) for k in sources[name].split(",")} for name in ("MLP's weights", "hidden units' activations", "logits")
    )
    assert len(weights) == 11 and weights == logits == activations
    shares = [float(x) for x in re.findall(r"identity holds for ([\d.]+)% of the block", out)]
    assert len(shares) == 11 and min(shares) >= 99.0
    true_min = _number(r"true_min_margin: ([\d.]+)", out)
    certified = _number(r"certified_min_margin: ([\d.]+)", out)
    assert abs(true_min - 2.74) < 0.01 and 0 < certified <= true_min
    assert _number(r" certified_accuracy: ([\d.]+)", out) == 1.0
    assert _number(r" cost_ratio: ([\d.]+)", out) < 0.15
    assert _number(r"logit_variance_explained: ([\d.]+)", out) > 0.9
    curve = re.findall(r"(\d+) frequencies: the compression alone proves ([\d.]+) at ([\d.]+) x", out)
    alone = {int(n): float(share) for n, share, _ in curve}
    assert alone[11] == 1.0 and alone[10] == 0.0 and alone[max(alone)] == 1.0
    costs = [float(cost) for _, _, cost in curve]
    assert costs == sorted(costs) and costs[-1] < 1.0


def check_sae_features(out: str) -> None:
    """Each shipped SAE reconstructs its hook (low FVU, L0 = k, few dead latents) and splicing it in costs almost
    nothing against zero-ablation; the feature-basis identity holds to rounding; Fig. 9's correlation grows with k."""
    rows = re.findall(
        r"(blocks\.\d\.mlp\.hook_\w+): FVU ([\d.]+), L0 ([\d.]+), dead ([\d.]+)%; loss ([\d.]+) -> ([\d.]+) spliced"
        r" \(\+([\d.]+); zero-ablated ([\d.]+)\)",
        out,
    )
    assert [row[0] for row in rows] == [f"blocks.{i}.mlp.hook_{s}" for i in (0, 1) for s in ("in", "out")]
    for _, fvu, l0, dead, loss, spliced, cost, ablated in rows:
        assert float(fvu) < 0.05 and float(l0) == 30.0 and float(dead) < 5.0
        assert float(spliced) - float(loss) == pytest.approx(float(cost), abs=2e-4) and float(cost) < 0.01
        assert float(ablated) > float(loss) + 0.2
    errors = [float(e) for e in re.findall(r"f\^T \(D Q_u D\^T\) f \+ bias terms: max relative error ([\d.e+-]+)", out)]
    assert len(errors) == 2 and max(errors) < 1e-10
    for k1, k2, k4, k8 in re.findall(r"mean correlation k=1 ([\d.]+), k=2 ([\d.]+), k=4 ([\d.]+), k=8 ([\d.]+)", out):
        assert float(k1) < float(k2) < float(k4) < float(k8) and float(k8) > 0.9


def check_image_classifiers(out: str) -> None:
    """Logits are e^T Q_c e; the shipped digits classifier is accurate, the identity holds to rounding; truncation
    recovers the model with its top components; eigen masks beat permuted ones; noise shrinks the outlier energy."""
    logits, quadratic = (
        [float(v) for v in re.search(rf"{name}: +\[([^\]]+)\]", out).group(1).split(",")]
        for name in ("logits", r"e\^T Q_c e")
    )
    assert len(logits) == 4 and max(abs(a - b) for a, b in zip(logits, quadratic)) < 1e-5
    accuracy = _number(r"test accuracy ([\d.]+)", out)
    assert accuracy > 0.95 and _number(r"\(digits-noreg ([\d.]+)\)", out) > 0.9
    assert _number(r"identity max relative error ([\d.e+-]+)", out) < 1e-10
    curve = [
        float(v)
        for v in re.findall(r"'\d+': ([\d.]+)", re.search(r"accuracy by top-k per class: (\{.*\})", out).group(1))
    ]
    assert curve == sorted(curve) and curve[0] < 0.2 and curve[-1] == pytest.approx(accuracy, abs=1e-4)
    assert _number(r"eigen masks at 1/4 mean image norm: .* permuted \(([\d.]+)x\)", out) > 3
    energy = _number(r"outlier energy of the top-4 eigen-images: digits ([\d.]+)", out)
    assert energy < _number(r"digits-noreg ([\d.]+)\n", out)


def check_streaming(out: str) -> None:
    """Fig. 9 from the stream improves with k; the features ranked by the streamed statistics come best first, the
    counts of dead, ultra-rare and alive features add up, and the weight ranking restricted to the alive features
    is ordered by |top eigenvalue| with each feature's largest activation above its mean when active."""
    k1, k2, k4, k8 = (
        float(v)
        for v in re.search(r"mean correlation k=1 ([\d.]+), k=2 ([\d.]+), k=4 ([\d.]+), k=8 ([\d.]+)", out).groups()
    )
    assert k1 < k2 < k4 < k8 and k8 > 0.9
    total, dead, rare = (int(v) for v in re.search(r"(\d+) features, (\d+) dead, (\d+) ultra-rare", out).groups())
    assert total == 512 and _number(r"restricted to the (\d+) features alive", out) == total - dead - rare
    densities = {}
    for label in ("density", "largest activation", "mean activation when active", r"Fig\. 9 correlation \(k=8\)"):
        line = re.search(rf"top features by {label}: (.*)", out)
        assert line, f"the tutorial no longer ranks by {label}"
        ranked = [(int(f), float(v)) for f, v in re.findall(r"(\d+) \(([\d.e+-]+)\)", line.group(1))]
        assert len(ranked) == 5 and [v for _, v in ranked] == sorted((v for _, v in ranked), reverse=True)
        if label == "density":
            densities = dict(ranked)
    assert all(0 < v <= 1 for v in densities.values())
    picked = re.findall(
        r"feature (\d+): top eigenvalue ([+-][\d.]+), density ([\d.]+)%, largest activation ([\d.]+), mean when "
        r"active ([\d.]+)",
        out,
    )
    assert len(picked) == 5
    assert [abs(float(p[1])) for p in picked] == sorted((abs(float(p[1])) for p in picked), reverse=True)
    for feature, _, density, largest, mean in picked:
        assert float(density) >= 0.01 and float(largest) >= float(mean) > 0
        if int(feature) in densities:
            assert abs(float(density) / 100 - densities[int(feature)]) < 1e-3


CHECKS = {
    "streaming": check_streaming,
    "image_classifiers": check_image_classifiers,
    "sae_features": check_sae_features,
    "weight_analysis": check_weight_analysis,
    "quickstart": check_quickstart,
    "modular_addition": check_modular_addition,
}


@pytest.mark.parametrize("script", TUTORIALS, ids=[s.stem for s in TUTORIALS])
def test_tutorial_runs(script, tmp_path):
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(tmp_path.glob("*.png")), "the tutorial drew no picture"
    assert "Traceback" not in done.stderr
    CHECKS.get(script.stem, lambda out: None)(done.stdout)
