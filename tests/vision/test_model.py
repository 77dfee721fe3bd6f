"""The hooked classifier: its hooks, the exact quadratic form of every logit, the shared analyses, save / load."""

from __future__ import annotations

import pytest
import torch
from jaxtyping import TypeCheckError

from hooked_bilinear.analysis.methods import BilinearAnalysisMethods
from hooked_bilinear.components.hooked_bilinear_mlp import HookedBilinearMLP
from hooked_bilinear.errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    CheckpointWeightsError,
)
from hooked_bilinear.vision import BilinearClassifier, VisionConfig, from_pretrained
from tests.vision.vision_models import brute_force_Q, random_model
from tests.vision.vision_models import random_pixels as pixels


@pytest.mark.parametrize("bias,head_bias", [(False, False), (True, False), (False, True), (True, True)])
def test_every_logit_is_a_quadratic_form_of_the_embedding(bias, head_bias):
    model = random_model(bias, head_bias)
    logits, cache = model.run_with_cache(pixels())
    e = model.augment(cache["mlp.hook_in"])
    Q = model.class_matrices()
    torch.testing.assert_close(Q, brute_force_Q(model), atol=1e-12, rtol=1e-12)
    quadratic = torch.einsum("bi,cij,bj->bc", e, Q, e)
    assert ((quadratic - logits).abs().max() / logits.abs().max()).item() <= 1e-12
    if not head_bias:  # then the layer's own Q (no head bias) is already exact
        Q_layer = model.mlp.interaction_matrix(model.class_directions())
        torch.testing.assert_close(torch.einsum("bi,cij,bj->bc", e, Q_layer, e), logits, atol=1e-10, rtol=1e-10)


def test_shipped_model_identity_float64_every_class():
    model = from_pretrained("digits").double()
    from hooked_bilinear.vision import load_split

    split = load_split(model.config)
    logits, cache = model.run_with_cache(split.test_x.double())
    e = cache["mlp.hook_in"]
    Q = model.mlp.interaction_matrix(model.class_directions(), dtype=torch.float64)
    quadratic = torch.einsum("bi,cij,bj->bc", e, Q, e)
    relative = (quadratic - logits).abs().amax(0) / logits.abs().amax(0)
    assert relative.shape == (10,) and relative.max().item() <= 1e-5


def test_hooks_hold_what_they_name():
    model = random_model(True, False)
    x = pixels(4)
    _, cache = model.run_with_cache(x)
    assert set(cache.keys()) == {
        "hook_pixels",
        "mlp.hook_in",
        "mlp.hook_pre",
        "mlp.hook_pre_linear",
        "mlp.hook_post",
        "hook_logits",
    }
    torch.testing.assert_close(cache["mlp.hook_in"], x @ model.embed.weight.T)
    torch.testing.assert_close(cache["mlp.hook_pre"], x @ model.embed.weight.T @ model.mlp.W_gate + model.mlp.b_gate)
    torch.testing.assert_close(cache["mlp.hook_post"], cache["mlp.hook_pre"] * cache["mlp.hook_pre_linear"])
    ablated = model.run_with_hooks(x, fwd_hooks=[("mlp.hook_pre", lambda t, hook: torch.zeros_like(t))])
    torch.testing.assert_close(ablated, torch.zeros_like(ablated))


def test_the_layer_uses_the_shared_analysis_methods():
    for name in ("interaction_matrix", "eigendecompose", "decompose", "truncate", "tensor", "hosvd", "factors"):
        assert getattr(BilinearClassifier(VisionConfig()).mlp.__class__, name) is getattr(BilinearAnalysisMethods, name)
        assert getattr(HookedBilinearMLP, name) is getattr(BilinearAnalysisMethods, name)


def test_eigendecomposition_and_contributions_of_the_logits():
    model = random_model(False, False)
    u = model.class_directions()
    eig = model.mlp.eigendecompose(u)
    torch.testing.assert_close(
        torch.einsum("ck,cki,ckj->cij", eig.lambda_, eig.v, eig.v), model.class_matrices(), atol=1e-10, rtol=1e-10
    )
    logits, cache = model.run_with_cache(pixels(5))
    contributions = model.mlp.decompose(cache["mlp.hook_in"], u).contributions  # [5, 10, 12]
    torch.testing.assert_close(contributions.sum(-1), logits, atol=1e-10, rtol=1e-10)


def test_to_pixels_reads_eigenvectors_as_images():
    model = random_model(True, False)
    v = torch.randn(3, model.config.d_model + 1, dtype=torch.float64)
    x = pixels(2)
    e = x @ model.embed.weight.T
    torch.testing.assert_close(x @ model.to_pixels(v).T, e @ v[:, :-1].T)


def test_bad_pixels_are_refused():
    model = BilinearClassifier(VisionConfig())
    with pytest.raises(ValueError, match=r"\[batch, 64\]"):
        model(torch.rand(2, 8))
    with pytest.raises(TypeCheckError):
        model(torch.rand(64))


def test_save_load_round_trip_and_errors(tmp_path):
    model = random_model(True, True).float()
    model.save(tmp_path / "m")
    loaded = BilinearClassifier.load(tmp_path / "m")
    assert loaded.config == model.config
    x = pixels(3).float()
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    with pytest.raises(CheckpointNotFoundError, match="config.json"):
        BilinearClassifier.load(tmp_path)
    with pytest.raises(CheckpointNotFoundError, match="neither a shipped"):
        from_pretrained("no-such-model")
    config = (tmp_path / "m" / "config.json").read_text()
    (tmp_path / "m" / "config.json").write_text(config.replace('"seed"', '"sead"'))
    with pytest.raises(CheckpointFormatError, match="sead"):
        BilinearClassifier.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(config.replace('"d_hidden": 20', '"d_hidden": 21'))
    with pytest.raises(CheckpointWeightsError, match="shape"):
        BilinearClassifier.load(tmp_path / "m")
