"""Truncation: exact with every component, a drop-in replacement in the hooked model, a faithfulness curve."""

from __future__ import annotations

import re

import pytest
import torch

from hooked_bilinear.analysis import (
    BilinearFactors,
    MLPReplacement,
    replace_mlp,
    truncate,
    truncation_curve,
)
from hooked_bilinear.components.not_bilinear_mlp import NotBilinearAnalyses
from hooked_bilinear.errors import NotBilinearError
from tests.analysis.factories import factors_of, mlp_forward, random_layer
from tests.analysis.models import random_model


@pytest.mark.parametrize("bias", [False, True])
def test_all_components_of_a_full_basis_reproduce_the_layer(bias):
    layer = random_layer(8, 16, bias, seed=1)
    x = torch.randn(3, 8, dtype=torch.float64)
    orthonormal = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64)).Q.T
    overcomplete = torch.randn(20, 8, dtype=torch.float64)  # like the vocabulary: more directions than d_model
    for basis in (orthonormal, overcomplete):
        module = truncate(factors_of(layer), basis, k=8 + bias)
        torch.testing.assert_close(module(x), mlp_forward(layer, x), atol=1e-11, rtol=1e-9)


def test_truncated_module_is_itself_a_bilinear_layer():
    layer = random_layer(8, 16, True, seed=2)
    module = truncate(factors_of(layer), torch.eye(8, dtype=torch.float64), k=3)
    x = torch.randn(5, 8, dtype=torch.float64)
    torch.testing.assert_close(BilinearFactors.from_mlp(module).forward(x), module(x), atol=1e-12, rtol=1e-12)
    fewer = module.keep(2)
    assert fewer.k == 2 and not torch.allclose(fewer(x), module(x))
    with pytest.raises(ValueError, match="1..3"):
        module.keep(4)


def test_dependent_basis_is_refused():
    basis = torch.randn(2, 8, dtype=torch.float64).repeat(2, 1)
    with pytest.raises(ValueError, match="linearly dependent"):
        truncate(factors_of(random_layer(8, 16, False)), basis, k=2)


def test_independent_rows_are_accepted_and_d_out_dependent_rows_refused():
    """Fewer independent rows than d_out are a basis of a subspace; d_out rows of rank d_out - 1 are not a basis."""
    factors = factors_of(random_layer(8, 16, False))
    x = torch.randn(3, 8, dtype=torch.float64)
    few = torch.randn(3, 8, dtype=torch.float64)
    module = truncate(factors, few, k=8)
    # all components of 3 directions: the layer's output projected on their span, exactly
    projector = torch.linalg.pinv(few) @ few
    torch.testing.assert_close(module(x), factors.forward(x) @ projector, atol=1e-11, rtol=1e-9)
    square = torch.randn(8, 8, dtype=torch.float64)
    square[7] = square[0] + square[1]
    with pytest.raises(ValueError) as refused:
        truncate(factors, square, k=2)
    assert str(refused.value) == (
        "the basis directions are linearly dependent: pass linearly independent rows (or an overcomplete set "
        "spanning d_out)."
    )


def test_the_truncated_module_answers_in_the_inputs_dtype():
    module = truncate(factors_of(random_layer(6, 8, True)), torch.eye(6, dtype=torch.float64), k=7)
    x = torch.randn(2, 6)
    out = module(x)
    assert module.v.dtype == torch.float64 and out.dtype == torch.float32
    torch.testing.assert_close(out, module(x.double()).float())


def test_replacement_in_the_hooked_model_and_the_curve():
    model, _, _ = random_model(d_model=32, d_hidden=48, bias=True)
    tokens = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(0))
    mlp = model.blocks[1].mlp
    full = mlp.truncate(mlp.hosvd(32, k=1).u, k=33)
    baseline = model(tokens, return_type="loss").item()
    with replace_mlp(model, 1, full):
        assert model(tokens, return_type="loss").item() == pytest.approx(baseline, abs=1e-4)
    with replace_mlp(model, 1, full.keep(1)):
        truncated_loss = model(tokens, return_type="loss").item()
    assert abs(truncated_loss - baseline) > 1e-4, "swapping in a 1-component MLP changed nothing"
    assert model(tokens, return_type="loss").item() == pytest.approx(baseline, abs=1e-6), "hooks left behind"
    curve = truncation_curve(model, 1, full, tokens, ks=[1, 4, 33], progress=False)
    replacement = replace_mlp(model, 1, full.keep(1))  # a plain call replaces until undone
    assert replacement.active and model(tokens, return_type="loss").item() == pytest.approx(truncated_loss, abs=1e-6)
    replacement.undo()
    assert not replacement.active and model(tokens, return_type="loss").item() == pytest.approx(baseline, abs=1e-6)
    replacement.remove()  # undoing twice is harmless
    other = replace_mlp(model, 0, full.keep(1))
    with model.hooks(fwd_hooks=[("hook_embed", lambda x, hook: x)]):  # contexts opening and closing meanwhile
        pass
    assert model(tokens, return_type="loss").item() != pytest.approx(baseline, abs=1e-4)
    other.remove()
    assert model(tokens, return_type="loss").item() == pytest.approx(baseline, abs=1e-6)
    with pytest.raises(IndexError, match="layers 0..1"):
        replace_mlp(model, 2, full)
    assert curve.baseline_loss == pytest.approx(baseline, abs=1e-5)
    assert curve.loss[-1] == pytest.approx(baseline, abs=1e-4) and curve.correlation[-1] > 1 - 1e-6
    assert curve.loss[0] == pytest.approx(truncated_loss, abs=1e-5)


def test_the_truncated_layer_has_biases_only_on_an_augmented_input():
    plain = truncate(factors_of(random_layer(6, 8, False)), torch.eye(6, dtype=torch.float64), k=2)
    assert plain.b_gate is None and plain.b_in is None and plain.b_out is None
    assert plain.W_gate.shape == (6, 12)
    augmented = truncate(factors_of(random_layer(6, 8, True)), torch.eye(6, dtype=torch.float64), k=2)
    torch.testing.assert_close(augmented.b_gate, augmented.v.reshape(12, 7)[:, -1], atol=0, rtol=0)
    assert augmented.W_gate.shape == (6, 12)


@pytest.fixture(scope="module")
def model_and_truncation():
    model, _, _ = random_model(d_model=32, d_hidden=48, bias=True)
    mlp = model.blocks[1].mlp
    return model, mlp.truncate(mlp.hosvd(32, k=1).u, k=33)


def test_replace_mlp_refuses_what_it_cannot_use(model_and_truncation):
    model, full = model_and_truncation
    with pytest.raises(TypeError, match=r"^replace_mlp needs a TransformerBridge \(with .blocks\), got object\.$"):
        MLPReplacement(object(), 0, full)
    with pytest.raises(TypeError, match="^replace_mlp needs a module mapping the MLP's input to its output, got int.$"):
        MLPReplacement(model, 0, 3)  # type: ignore[arg-type]


def test_a_replacement_output_takes_the_models_dtype_and_leaves_no_hook_behind(model_and_truncation):
    model, full = model_and_truncation
    tokens = torch.randint(0, 40, (1, 6), generator=torch.Generator().manual_seed(3))
    points = [model.blocks[1].mlp.hook_in, model.blocks[1].mlp.hook_out]
    before = [len(point.fwd_hooks) for point in points]

    def wide(x):  # a module answering in float64, in a float32 model
        return full(x).double()

    with replace_mlp(model, 1, wide) as replacement:
        assert replacement.layer == 1
        assert model(tokens).dtype == torch.float32
        assert [len(point.fwd_hooks) for point in points] == [n + 1 for n in before]
    assert [len(point.fwd_hooks) for point in points] == before


def test_the_curve_against_its_definition(model_and_truncation, capsys):
    """Per k, the correlation of keep(k)'s outputs with the MLP's on the tokens' activations, and a progress bar
    by default."""
    model, full = model_and_truncation
    tokens = torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(5))
    curve = truncation_curve(model, 1, full, tokens, ks=[1, 2])
    assert re.search(r"(^|\r)truncation curve: ", capsys.readouterr().err)
    assert curve.ks == [1, 2]
    _, cache = model.run_with_cache(tokens)
    x, out = cache["blocks.1.mlp.hook_in"], cache["blocks.1.mlp.hook_out"]
    for k, correlation in zip(curve.ks, curve.correlation, strict=True):
        approx = full.keep(k)(x).flatten().double()
        expected = torch.corrcoef(torch.stack([approx, out.flatten().double()]))[0, 1].item()
        assert correlation == pytest.approx(expected, abs=1e-6) and correlation < 1 - 1e-6
    truncation_curve(model, 1, full, tokens, ks=[1], progress=False)
    assert "truncation curve" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="vocabulary|vocab"):
        truncation_curve(model, 1, full, torch.full((1, 4), 40), ks=[1], progress=False)


def test_the_curve_of_a_layer_that_is_not_bilinear_is_refused(monkeypatch, model_and_truncation):
    _, full = model_and_truncation
    glu, _, _ = random_model(d_model=32, d_hidden=48, gate="silu")
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(NotBilinearError, match=r"^blocks.0.mlp is a gated MLP"):
        truncation_curve(glu, 0, full, tokens, ks=[1], progress=False)
    monkeypatch.delattr(NotBilinearAnalyses, "is_bilinear")  # an MLP that does not say: not bilinear either
    with pytest.raises(NotBilinearError, match=r"^blocks.0.mlp is a gated MLP"):
        truncation_curve(glu, 0, full, tokens, ks=[1], progress=False)
