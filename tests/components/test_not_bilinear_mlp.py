"""GLU and plain MLPs keep TransformerLens's forward, and each analysis method refuses with NotBilinearError naming the
layer and what it is."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.errors import NotBilinearError
from tests.components.test_hooked_bilinear_mlp import load

METHODS = [
    "factors",
    "interaction_matrix",
    "eigendecompose",
    "tensor",
    "decompose",
    "hosvd",
    "truncate",
    "feature_interactions",
]


@pytest.mark.parametrize(
    "overrides, kind",
    [
        (dict(gate="silu"), "is a gated MLP"),
        (dict(bilinear=False, gate="gelu"), "is a plain MLP with activation 'gelu': out = W_out act(W_in x)"),
    ],
    ids=["glu", "plain"],
)
def test_every_analysis_method_refuses_naming_the_layer(checkpoint, overrides, kind):
    folder, _, _ = checkpoint(**overrides)
    mlp = load(folder).blocks[1].mlp
    assert mlp.is_bilinear is False
    for method in METHODS:
        with pytest.raises(NotBilinearError) as refused:
            getattr(mlp, method)(torch.ones(3))
        assert str(refused.value).startswith(f"blocks.1.mlp {kind}"), method


@pytest.mark.parametrize("overrides", [dict(gate="silu"), dict(bilinear=False, gate="gelu")], ids=["glu", "plain"])
def test_the_forward_is_the_models_with_its_projections_hooked(checkpoint, overrides):
    """TransformerLens's forward over the checkpoint's own projections: the bridge's logits are the model's, and the
    `out` projection's input is cached."""
    folder, _, _ = checkpoint(**overrides)
    bridge = load(folder)
    tokens = torch.randint(0, 50, (1, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(tokens)
        expected = bridge.original_model(tokens).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert cache["blocks.1.mlp.out.hook_in"].shape == (1, 7, 48)
