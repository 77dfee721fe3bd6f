"""scripts/modadd_relu_linear_limits.py: its split of a ReLU pizza model's logits is exact, every combination it
reports stays below the true margins, and its bounds are ordered as each one's derivation says (on a random and on the
shipped model)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from hooked_bilinear.loading.pretrained import load_model
from hooked_bilinear.toy.modadd import NANDA, ModAddTask, ModAddTrainConfig
from hooked_bilinear.toy.modadd.train import build_modadd_model

SCRIPT = Path(__file__).parents[1] / "scripts" / "modadd_relu_linear_limits.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("modadd_relu_linear_limits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(figures):
    assert figures["split_identity_max_error"] < 1e-9
    # each kink bound is >= the exact kinks per input, so it certifies no more; the model-space residual bound
    # aggregates the per-unit one's terms before the norm
    assert figures["kinks_exact_median"] <= figures["kinks_harmonic_worst_median"]
    assert figures["kinks_exact_median"] <= figures["kinks_key_worst_median"]
    assert figures["kinks_exact_median"] <= figures["kinks_own_harmonic_worst_median"]
    exact = figures["limit_model_space_residual_exact_kinks"]
    for other in ("harmonic_worst_kinks", "own_harmonic_worst_kinks", "key_worst_kinks", "hybrid_kinks_B32"):
        assert figures[f"limit_model_space_residual_{other}"] <= exact
    # the hybrid sums more units exactly as B grows: never above the relaxation, never below the exact kinks
    hybrid = [figures[f"kinks_hybrid_B{count}_median"] for count in (32, 64, 128)]
    assert figures["kinks_exact_median"] <= hybrid[2] <= hybrid[1] <= hybrid[0]
    assert hybrid[0] <= figures["kinks_own_harmonic_worst_median"]
    assert figures["residual_true_median"] <= figures["residual_model_space_median"]
    assert 0 <= figures["mispredicted_pairs_window"] <= 1


@pytest.mark.parametrize("harmonics", [1, 2])
def test_the_split_is_exact_and_every_combination_sound_on_a_random_model(script, harmonics):
    task = ModAddTask(p=13, input_format="a b", uniform_attention=True, train_fraction=0.8)
    model = build_modadd_model(task, ModAddTrainConfig(d_model=32, n_head=4, d_hidden=48, init_std=0.3, mlp="relu"))
    check(script.limits(model, harmonics))


def test_the_shipped_models_figures(script):
    """The documented figures of modadd-relu-p59 at H = 3 (docs/modadd-relu.md)."""
    figures = script.limits(load_model("modadd-relu-p59"), 3)
    check(figures)
    assert figures["harmonic_frequencies"] == 17
    assert figures["residual_energy"] < 2e-4
    assert figures["residual_model_space_median"] < figures["residual_per_unit_median"] / 5
    assert 0.6 < figures["limit_model_space_residual_exact_kinks"] < figures["certified_windows_bound"]
    assert figures["limit_model_space_residual_key_worst_kinks"] == 0
    assert figures["limit_model_space_residual_own_harmonic_worst_kinks"] < 0.01
    # B = 32 / 64 / 128 units' kinks summed exactly: up to 14.6% / 24.0% / 44.4% (documented)
    assert 0.13 < figures["limit_model_space_residual_hybrid_kinks_B32"] < 0.16
    assert 0.22 < figures["limit_model_space_residual_hybrid_kinks_B64"] < 0.26
    assert figures["limit_harmonic_pattern"] > 0.99  # the explanation is good enough there, if computed per pair


def test_pre_activations_are_additive_exactly_under_uniform_attention(script):
    """The quadrature reading's premise P_n[a] + Q_n[b]: exact for a pizza model, not for a trained-attention one."""
    assert script.additive_fraction(load_model("modadd-relu-p59")) == pytest.approx(1.0, abs=1e-12)
    config = ModAddTrainConfig(d_model=32, n_head=4, d_hidden=48, init_std=0.3, mlp="relu")
    nanda = build_modadd_model(replace(NANDA, p=13), config)
    assert script.additive_fraction(nanda) < 0.999


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--harmonics", "0"], "--harmonics 0: H counts the harmonics h = 1..H of each key frequency; pass 1 or more."),
        (
            ["--harmonics", "30"],
            "--harmonics 30: modadd-relu-p59 has p = 59, whose frequencies end at (p - 1) / 2 = 29",
        ),
        (["--models", "README.md"], "--models: 'README.md' is neither a shipped checkpoint"),
        (["--models", "out/no_such_run/relu-p31"], "out/no_such_run/relu-p31: no such folder."),
    ],
)
def test_bad_arguments_are_refused_naming_the_flag(script, monkeypatch, capsys, argv, message):
    monkeypatch.setattr(script, "limits", lambda *args: pytest.fail("computed before the arguments were checked"))
    monkeypatch.setattr("sys.argv", ["modadd_relu_linear_limits.py", "--models", "modadd-relu-p59", *argv])
    with pytest.raises(SystemExit) as exit_info:
        script.main()
    assert exit_info.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err
