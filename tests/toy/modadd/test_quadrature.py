"""The quadrature reading of a ReLU pizza model: its identities hold, and its linear-time certificate never claims a
margin above the true one (random, part-trained, damaged and shipped models), and fails to be sound without its
error terms."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch

from hooked_bilinear.loading.pretrained import load_model
from hooked_bilinear.toy.modadd import PIZZA, ModAddTask, ModAddTrainConfig, train_recipe
from hooked_bilinear.toy.modadd import quadrature as quad
from hooked_bilinear.toy.modadd.certify import brute_force_flops
from hooked_bilinear.toy.modadd.interval import Ledger
from hooked_bilinear.toy.modadd.quadrature import certify_relu, read_tables, read_units
from hooked_bilinear.toy.modadd.report import all_logits, margins
from hooked_bilinear.toy.modadd.train import build_modadd_model

TASK = ModAddTask(p=13, input_format="a b", uniform_attention=True, train_fraction=0.8)
SMALL = ModAddTrainConfig(d_model=32, n_head=4, d_hidden=48, init_std=0.3, mlp="relu")


def read_all(model, task, harmonics):
    """The tables, the reading and the quadrature terms of a model, with their ledger."""
    ledger = Ledger()
    tables = read_tables(model, task, ledger)
    reading = read_units(tables, task.p, None, ledger, harmonics=harmonics)
    return tables, reading, quad.quadrature_terms(reading, task.p, ledger), ledger


def true_margins(model, task):
    return margins(all_logits(model, task), task)


def assert_sound(model, task, **kwargs):
    true = true_margins(model, task)
    certificate = certify_relu(model, task, **kwargs)
    assert certificate.margin.shape == true.shape
    assert (certificate.margin <= true).all(), (certificate.margin - true).max().item()
    assert (certificate.compressed <= true).all()
    return certificate, true


@pytest.fixture(scope="module")
def random_relu():
    return build_modadd_model(TASK, SMALL)


@pytest.fixture(scope="module")
def trained_relu():
    """A p=13 ReLU pizza model: 300 epochs of the pizza recipe's first stage, and its snapshots at 0, 100, 200."""
    task = replace(TASK, p=17)
    config = replace(SMALL, init_std=0.02, d_hidden=96, lr=3e-3, max_epochs=300, eval_every=100, stop_at_target=False)
    snapshots = []
    model, _ = train_recipe(
        task,
        (replace(config, weight_decay=1.0),),
        on_eval=lambda epoch, m: snapshots.append(copy.deepcopy(m)),
        progress=False,
    )
    return task, model, snapshots


@pytest.mark.parametrize("bound", quad.BOUNDS)
@pytest.mark.parametrize("harmonics", [1, 3])
def test_sound_on_random_models(random_relu, harmonics, bound):
    assert_sound(random_relu, TASK, harmonics=harmonics, bound=bound)
    assert_sound(random_relu, TASK, frequencies=[1, 2, 5], harmonics=harmonics, bound=bound)


@pytest.mark.parametrize("bound", quad.BOUNDS)
def test_sound_on_part_trained_snapshots_and_with_the_fallback(trained_relu, bound):
    task, model, snapshots = trained_relu
    assert len(snapshots) == 4  # epochs 0, 100, 200, 300
    for snapshot in snapshots:
        assert_sound(snapshot, task, bound=bound)
    certificate, true = assert_sound(model, task, fallback=True, bound=bound)
    assert certificate.certified_accuracy == (true > 0).double().mean().item()  # the fallback is exact but rounding
    assert (certificate.margin >= certificate.compressed).all()


@pytest.mark.parametrize("bound", quad.BOUNDS)
@pytest.mark.parametrize("source", ["random", "trained"])
def test_sound_on_damaged_weights(random_relu, trained_relu, source, bound):
    task, model = (TASK, random_relu) if source == "random" else trained_relu[:2]
    generator = torch.Generator().manual_seed(1)
    damaged = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in (damaged.transformer.wte.weight, damaged.transformer.h[0].mlp.w.weight):
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    assert_sound(damaged, task, bound=bound)


def test_the_error_terms_are_what_keep_it_sound(random_relu, monkeypatch):
    """Without the pre-activation and output error terms the bound claims margins above the truth."""
    true = true_margins(random_relu, TASK)
    original = quad._range

    monkeypatch.setattr(quad, "_range", lambda x, dim: torch.zeros_like(original(x, dim)))  # drops (4) and (5)
    monkeypatch.setattr(quad.Ball, "magnitude", lambda self: torch.zeros_like(self.mid))  # drops (3) and (2)
    broken = certify_relu(random_relu, TASK, bound="quadrature")
    assert (broken.margin > true).any()


def test_the_identity_behind_the_reading_holds_on_every_input():
    """alpha cos(theta a + phi) + alpha cos(theta b + phi) = 2 alpha C cos(x + phi) and its ReLU is
    2 alpha |C| ReLU(cos(x' + phi)), x' = x + pi where C < 0, with the integer half-angle index the proof uses."""
    p, k, alpha, phi = 17, 5, 1.3, 0.7
    a, b = ModAddTask(p=p, input_format="a b", uniform_attention=True).operands()
    theta = 2 * math.pi * k / p
    direct = torch.relu(alpha * torch.cos(theta * a.double() + phi) + alpha * torch.cos(theta * b.double() + phi))
    C = torch.cos(math.pi * k * (a - b).double() / p)
    flip = quad._negative_cos_half(k, a - b, p)
    assert torch.equal(flip, C < 0)
    j = (k * (a + b) + p * flip.long()) % (2 * p)
    via = 2 * alpha * C.abs() * torch.relu(torch.cos(math.pi * j.double() / p + phi))
    torch.testing.assert_close(via, direct.double(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_the_integral_identity_the_units_approximate(m):
    """(1 / 2 pi) int ReLU(cos psi) cos(2 m psi + y) d psi = (-1)^{m+1} cos(y) / (pi (4 m^2 - 1)): a fine midpoint
    rule (what many evenly spread units compute) against the closed form."""
    psi = (torch.arange(200_000, dtype=torch.float64) + 0.5) * 2 * math.pi / 200_000 - math.pi
    for y in (0.0, 0.9, 2.5):
        rule = (torch.relu(torch.cos(psi)) * torch.cos(2 * m * psi + y)).mean().item()
        assert rule == pytest.approx((-1) ** (m + 1) * math.cos(y) / (math.pi * (4 * m * m - 1)), abs=1e-9)


def test_the_reading_fits_the_shipped_models_units():
    model = load_model("modadd-relu-p59")
    tables = read_tables(model, PIZZA, Ledger())
    reading = read_units(tables, PIZZA.p, None, Ledger())
    fitted = quad.quadrature_terms(reading, PIZZA.p, Ledger()).P_fit.mid
    mean = (tables.P.mid + tables.Q.mid) / 2
    explained = 1 - (mean - fitted).pow(2).sum() / mean.pow(2).sum()
    assert explained > 0.9 and set(reading.frequencies) == {3, 6, 23}


@pytest.mark.slow
def test_shipped_relu_model_is_correct_and_its_certificate_sound_and_cheap():
    model = load_model("modadd-relu-p59")
    true = true_margins(model, PIZZA)
    assert (true > 0).all()
    certificate, _ = assert_sound(model, PIZZA, fallback=True, bound="quadrature")
    assert certificate.certified_accuracy == 1.0
    assert certificate.compressed_flops < 0.05 * brute_force_flops(model, PIZZA)
    assert certificate.proof_flops < 0.2 * brute_force_flops(model, PIZZA)


def test_other_models_and_bad_arguments_are_refused(random_relu):
    bilinear = build_modadd_model(TASK, replace(SMALL, mlp="bilinear"))
    with pytest.raises(ValueError, match="reads ReLU models"):
        certify_relu(bilinear, TASK)
    nanda_like = build_modadd_model(ModAddTask(p=13), SMALL)
    with pytest.raises(ValueError, match="pizza set-up"):
        certify_relu(nanda_like, ModAddTask(p=13))
    with pytest.raises(ValueError, match="frequencies"):
        certify_relu(random_relu, TASK, frequencies=[0])
    with pytest.raises(ValueError, match="harmonics"):
        certify_relu(random_relu, TASK, harmonics=0)
    with pytest.raises(ValueError, match="bound='integral': pass one of 'windows', 'quadrature'"):
        certify_relu(random_relu, TASK, bound="integral")


@pytest.mark.parametrize("source", ["random", "trained"])
def test_the_quadrature_bound_holds_for_the_explanations_own_margins(random_relu, trained_relu, source):
    """Terms 1 and 2 bound min_c sum_n (U~[c*] - U~[c]) ReLU(P~[a] + P~[b]) from below on every input: the
    quadrature sum (the '+ harmonic outputs' level, direct path removed) against its integral and error."""
    task, model = (TASK, random_relu) if source == "random" else trained_relu[:2]
    tables, reading, terms, ledger = read_all(model, task, harmonics=3)
    fitted = torch.relu(terms.P_fit.mid[:, None, :] + terms.P_fit.mid[None, :, :]) @ terms.U_fit.mid.T
    explained = margins(fitted, task).reshape(-1)
    bound, integral, by_input, _ = quad.quadrature_bound(terms, reading, task, ledger)
    assert (bound <= explained + 1e-9).all(), (bound - explained).max().item()
    no_error = torch.maximum(bound, integral.mid.amin(1)[(task.operands()[0] - task.operands()[1]) % task.p])
    assert (no_error > explained + 1e-6).any()  # the integral alone overshoots: the quadrature error is needed


def test_the_explanation_levels_reproduce_the_model_and_drift_from_it(random_relu):
    levels = quad.explanation_logits(random_relu, TASK)
    table = quad.explanation_table(levels, TASK)
    assert [row["level"] for row in table] == list(levels)
    assert table[0]["max |error|"] == 0.0
    true = margins(all_logits(random_relu, TASK), TASK)
    model_margins = margins(levels["model"], TASK)
    torch.testing.assert_close(model_margins, true, rtol=1e-5, atol=1e-5)  # centring moves no margin


@pytest.mark.parametrize("source", ["random", "trained"])
def test_each_error_term_covers_its_own_part_of_the_model_minus_the_explanation(random_relu, trained_relu, source):
    """For every input and c, each part of (logit_c* - logit_c) - the explanation's lies within its term's
    per_a[a] + per_b[b]: (3) sum_n (U~[c*] - U~[c]) (h_n - h~_n), (4) sum_n (R_U[c*] - R_U[c]) h_n, (5) the direct
    logits; and the three add up to the whole difference."""
    task, model = (TASK, random_relu) if source == "random" else trained_relu[:2]
    tables, reading, terms, ledger = read_all(model, task, harmonics=2)
    p = task.p
    _, _, parts = quad.error_bounds(tables, reading, terms, ledger)
    P, Q, U, P_fit, U_fit = tables.P.mid, tables.Q.mid, tables.U.mid, terms.P_fit.mid, terms.U_fit.mid
    hidden, fitted = torch.relu(P[:, None, :] + Q[None, :, :]), torch.relu(P_fit[:, None, :] + P_fit[None, :, :])
    R_U = U - reading.offset[None, :] - U_fit
    answers = task.labels().reshape(p, p, 1)

    def difference(logits):
        return logits.gather(-1, answers) - logits

    pieces = {
        "pre-activations (Lipschitz), per a + per b": difference((hidden - fitted) @ U_fit.T),
        "output residual R_U, per a + per b": difference(hidden @ R_U.T),
        "direct path, per a + per b": difference(tables.direct_a.mid[:, None, :] + tables.direct_b.mid[None, :, :]),
    }
    for name, piece in pieces.items():
        part_a, part_b = parts[name]
        allowed = part_a[:, None, None] + part_b[None, :, None]
        assert (piece.abs() <= allowed + 1e-9).all(), (name, (piece.abs() - allowed).max().item())
    whole = difference(all_logits(model, task)) - difference(fitted @ U_fit.T)
    torch.testing.assert_close(sum(pieces.values()), whole, rtol=1e-4, atol=1e-4)


def quadrature_model(task, n_units, k=1, d_model=8, alpha=2.0, gamma=0.5):
    """A ReLU pizza model that is exactly the quadrature: E[t] = (cos, sin)(theta t) in dims 0, 1; the attention
    copies it to dims 2, 3 (A = (s / 2) E there, B = E + A); unit n reads alpha cos(theta a + phi_n) from dims 2, 3 with
    phi_n = 2 pi n / N evenly spaced, and writes gamma (cos, -sin)(2 phi_n) to dims 4, 5, which W_U reads as
    (cos, sin)(theta c): U'[c, n] = gamma cos(theta c + 2 phi_n), no direct path."""
    model = build_modadd_model(task, replace(SMALL, d_model=d_model, n_head=2, d_hidden=n_units))
    p, theta = task.p, 2 * math.pi * k / task.p
    t = torch.arange(p, dtype=torch.float64)
    phi = 2 * math.pi * torch.arange(n_units, dtype=torch.float64) / n_units
    half = model.config.attn_residual_scale / 2
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.transformer.wte.weight[:, 0], model.transformer.wte.weight[:, 1] = (
            torch.cos(theta * t),
            torch.sin(theta * t),
        )
        qkv = model.transformer.h[0].attn.qkv.weight
        qkv[2 * d_model + 2, 0] = qkv[2 * d_model + 3, 1] = 1.0
        model.transformer.h[0].attn.o.weight.copy_(torch.eye(d_model))
        w = model.transformer.h[0].mlp.w.weight
        w[:, 2], w[:, 3] = alpha * torch.cos(phi) / half, -alpha * torch.sin(phi) / half
        out = getattr(model.transformer.h[0].mlp, model.config.mlp_down_name).weight
        out[4], out[5] = gamma * torch.cos(2 * phi), -gamma * torch.sin(2 * phi)
        model.lm_head.weight[:, 4], model.lm_head.weight[:, 5] = torch.cos(theta * t), torch.sin(theta * t)
    return model


def test_a_model_that_is_the_quadrature_is_certified_by_the_bound_alone():
    """Where the model is the explanation (evenly spaced phases, one frequency, no residuals) the linear-time bound is
    not vacuous: it certifies every input by itself; with a few uneven units it is still sound."""
    task = replace(TASK, p=13)
    model = quadrature_model(task, n_units=48)
    certificate, true = assert_sound(model, task, harmonics=1, bound="quadrature")
    assert (true > 0).all()
    assert certificate.compressed_accuracy == 1.0
    assert certificate.certified_min_margin > 0.95 * true.min().item()  # tight: 0.138 against 0.140
    assert certificate.errors["pre-activations (Lipschitz), per a + per b"] < 1e-3
    coarse = quadrature_model(task, n_units=3)
    assert_sound(coarse, task, harmonics=1, bound="quadrature")
    assert_sound(coarse, task, harmonics=1)
