"""as_factors: the factors every analysis works on, in the analysis dtype."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP

from hooked_bilinear.analysis.factors import BilinearFactors, analysis_dtype, as_factors, mlp_name, not_bilinear
from hooked_bilinear.errors import NotBilinearError
from hooked_bilinear.modeling.configuration import BilinearConfig
from hooked_bilinear.modeling.modeling import MLP as TdoomsMLP
from tests.analysis.factories import factors_of, mlp_forward, random_layer


def test_factors_given_are_cast_to_the_dtype_asked_for():
    factors = factors_of(random_layer(6, 8, True, dtype=torch.float32))
    assert as_factors(factors) is factors  # float32 is already an analysis dtype
    wide = as_factors(factors, torch.float64)
    assert wide.dtype == torch.float64 and wide.augmented == factors.augmented
    torch.testing.assert_close(wide.W_gate, factors.W_gate.double(), atol=0, rtol=0)


def test_half_precision_factors_are_analysed_in_float32():
    f = factors_of(random_layer(6, 8, False))
    half = BilinearFactors(f.W_gate.half(), f.W_in.half(), f.W_out.half(), f.augmented)
    assert as_factors(half).dtype == torch.float32


def _forward_of(layer: dict, x: torch.Tensor) -> torch.Tensor:
    return mlp_forward(layer, x)


@pytest.mark.parametrize("present", list(itertools.product([False, True], repeat=3)), ids=lambda p: str(p))
def test_folded_biases_give_the_layer_exactly(present):
    """Any subset of the three biases folds into augmented factors whose bias-free forward is the layer's, with the
    constant input read by one extra hidden unit (b_out) and the biases as the last input row."""
    layer = random_layer(5, 7, True, seed=3)
    for name, keep in zip(("b_gate", "b_in", "b_out"), present, strict=True):
        if not keep:
            layer[name] = None
    factors = factors_of(layer)
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(factors.forward(x), _forward_of(layer, x), atol=1e-12, rtol=1e-12)
    assert factors.augmented == any(present)
    expected = (6, 8, 5) if any(present) else (5, 7, 5)
    assert (factors.d_in, factors.d_hidden, factors.d_out) == expected and factors.d_model == 5
    if any(present):  # the extra unit: reads 1 on both sides, writes b_out
        unit = torch.zeros(6, dtype=torch.float64)
        unit[-1] = 1.0
        torch.testing.assert_close(factors.W_gate[:, -1], unit, atol=0, rtol=0)
        torch.testing.assert_close(factors.W_in[:, -1], unit, atol=0, rtol=0)


@pytest.mark.parametrize(
    "weights, asked, expected",
    [
        (torch.float64, None, torch.float64),
        (torch.float32, None, torch.float32),
        (torch.bfloat16, None, torch.float32),
        (torch.float16, None, torch.float32),
        (torch.float32, torch.float64, torch.float64),
        (torch.bfloat16, torch.float64, torch.float64),
    ],
)
def test_weights_are_analysed_in_the_analysis_dtype(weights, asked, expected):
    layer = random_layer(4, 6, True, dtype=weights)
    factors = factors_of(layer, dtype=asked)
    assert factors.dtype == factors.W_in.dtype == factors.W_out.dtype == expected
    # the folded weights are the given ones, cast
    torch.testing.assert_close(factors.W_in[:4, :6], layer["W_in"].to(expected), atol=0, rtol=0)
    torch.testing.assert_close(factors.W_gate[4, :6], layer["b_gate"].to(expected), atol=0, rtol=0)
    torch.testing.assert_close(factors.W_in[4, :6], layer["b_in"].to(expected), atol=0, rtol=0)
    torch.testing.assert_close(factors.W_out[6], layer["b_out"].to(expected), atol=0, rtol=0)
    assert analysis_dtype(weights, asked) == expected


def test_an_integer_analysis_dtype_is_refused():
    with pytest.raises(TypeError, match="analysis dtype must be a floating-point dtype, got torch.int64"):
        factors_of(random_layer(4, 6, False), dtype=torch.int64)


@pytest.mark.parametrize("name", ["W_gate", "W_in", "W_out", "b_gate", "b_in", "b_out"])
def test_non_finite_weights_are_counted_and_named(name):
    layer = random_layer(4, 6, True)
    layer[name] = layer[name].clone()
    layer[name].view(-1)[:2] = torch.tensor([float("nan"), float("-inf")], dtype=torch.float64)
    with pytest.raises(ValueError) as refused:
        factors_of(layer)
    assert str(refused.value) == (
        f"the MLP weight {name} holds 2 NaN/inf value(s); an analysis of non-finite numbers would be meaningless. "
        "Check the checkpoint (or the tensor you passed) for overflow or corrupted values."
    )


def test_factors_given_are_cast_whole():
    factors = factors_of(random_layer(6, 8, True, dtype=torch.float32))
    wide = as_factors(factors, torch.float64)
    for name in ("W_gate", "W_in", "W_out"):
        torch.testing.assert_close(getattr(wide, name), getattr(factors, name).double(), atol=0, rtol=0)


def test_augment_and_directions_validate_and_cast():
    factors = factors_of(random_layer(3, 5, True))
    x = torch.tensor([[1.0, 2.0, 3.0]])  # float32 in, float64 out, with the constant 1 appended
    torch.testing.assert_close(factors.augment(x), torch.tensor([[1.0, 2.0, 3.0, 1.0]], dtype=torch.float64))
    plain = factors_of(random_layer(3, 5, False))
    torch.testing.assert_close(plain.augment(x), x.double(), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"input of size 4 given, but this MLP reads vectors of size d_model=3 "):
        factors.augment(torch.ones(2, 4))
    with pytest.raises(ValueError, match="the input x holds 1 NaN/inf"):
        factors.augment(torch.tensor([1.0, float("nan"), 0.0]))
    u = torch.tensor([0.5, 0.0, 2.0])
    assert factors.directions(u).shape == (1, 3) and factors.directions(u).dtype == torch.float64
    torch.testing.assert_close(factors.directions(torch.stack([u, 2 * u])), torch.stack([u, 2 * u]).double())
    with pytest.raises(
        TypeError, match=r"directions must be a torch.Tensor of shape \[d_out\] or \[n, d_out\], got list"
    ):
        factors.directions([0.5, 0.0, 2.0])
    for bad in (torch.ones(4), torch.ones(2, 2, 3), torch.tensor(1.0)):
        with pytest.raises(ValueError, match=r"pass a tensor of shape \[3\] or \[n, 3\]"):
            factors.directions(bad)
    with pytest.raises(ValueError, match="the output direction\\(s\\) u holds 1 NaN/inf"):
        factors.directions(torch.tensor([float("inf"), 0.0, 0.0]))


def llama_mlp(hidden_act: str, bias: bool) -> LlamaMLP:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=6, intermediate_size=10, num_attention_heads=2, hidden_act=hidden_act, mlp_bias=bias
    )
    mlp = LlamaMLP(config).double()
    if bias:
        for linear in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            torch.nn.init.normal_(linear.bias)
    return mlp


def tdooms_mlp(gate: str | None, bilinear: bool = True, bias: bool = True) -> TdoomsMLP:
    torch.manual_seed(1)
    mlp = TdoomsMLP(BilinearConfig(d_model=6, d_hidden=10, n_head=3, bilinear=bilinear, gate=gate, bias=bias)).double()
    if bias:
        for linear in (mlp.w, mlp.down):
            torch.nn.init.normal_(linear.bias)
    return mlp


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("kind", ["llama", "tdooms"])
def test_factors_of_mlp_modules_compute_the_module(kind, bias):
    """The factors of a transformers LlamaMLP (hidden_act "linear") and of a tdooms MLP (gate null) compute the
    module's own forward, with the gate side first: W_gate = gate_proj (tdooms: the first half of w)."""
    mlp = llama_mlp("linear", bias) if kind == "llama" else tdooms_mlp(None, bias=bias)
    x = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    factors = as_factors(mlp)
    assert factors.augmented == bias and factors.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(factors.forward(x), mlp(x), atol=1e-12, rtol=1e-12)
    gate = mlp.gate_proj.weight if kind == "llama" else mlp.w.weight[:10]
    torch.testing.assert_close(factors.W_gate[:6, :10], gate.T, atol=0, rtol=0)
    if bias:
        gate_bias = mlp.gate_proj.bias if kind == "llama" else mlp.w.bias[:10]
        torch.testing.assert_close(factors.W_gate[6, :10], gate_bias, atol=0, rtol=0)
    assert as_factors(mlp, torch.float32).dtype == torch.float32


def test_factors_of_a_bilinear_component_are_its_weights():
    """Anything with `is_bilinear = True` (HookedBilinearMLP, TruncatedBilinearMLP) gives its W_* / b_* as they are."""
    layer = random_layer(4, 6, True, seed=8, dtype=torch.float32)
    component = SimpleNamespace(is_bilinear=True, **layer)
    factors = as_factors(component, torch.float64)  # type: ignore[arg-type]
    assert factors.dtype == torch.float64
    x = torch.randn(3, 4, dtype=torch.float64)
    expected = _forward_of({k: v.double() for k, v in layer.items()}, x)
    torch.testing.assert_close(factors.forward(x), expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize(
    "mlp, what",
    [
        (
            llama_mlp("silu", False),
            "this LlamaMLP is a gated MLP with activation 'silu': out = W_out(act(W_gate x) * "
            "(W_in x)), a GLU / SwiGLU (LlamaMLP)",
        ),
        (
            tdooms_mlp("silu"),
            "this MLP is a gated MLP with activation 'silu': out = W_out(act(W_gate x) * (W_in x)), "
            "a GLU / SwiGLU (MLP)",
        ),
        (
            tdooms_mlp("gelu", bilinear=False),
            "this MLP is a plain MLP with activation 'gelu': out = W_out act(W_in x) (MLP)",
        ),
        (torch.nn.Linear(3, 3), "this Linear is a Linear, not a bilinear MLP (Linear)"),
    ],
    ids=["llama-swiglu", "tdooms-glu", "tdooms-plain", "linear"],
)
def test_an_mlp_that_is_not_bilinear_is_refused_with_what_it_is(mlp, what):
    with pytest.raises(NotBilinearError) as refused:
        as_factors(mlp)
    message = str(refused.value)
    assert message.startswith(what + ". Weight-space analyses (interaction matrices, eigendecomposition, B, HOSVD, ")
    assert message.endswith(
        "an activation leaves no exact interaction matrix. Analyse a bilinear checkpoint (tdooms 'gate': null, or a "
        'Llama with hidden_act "linear"), or make a SwiGLU Llama bilinear first with hooked_bilinear.bilinearize.'
    )


def test_the_refusal_names_the_layer():
    """By `where` when given, else by the MLP's hook names (a bridge's `blocks.{l}.mlp`)."""
    mlp = llama_mlp("silu", False)
    with pytest.raises(NotBilinearError, match=r"^layer 3 is a gated MLP"):
        BilinearFactors.from_mlp(mlp, where="layer 3")
    mlp.hook_in = SimpleNamespace(name="blocks.2.mlp.hook_in")
    assert mlp_name(mlp) == "blocks.2.mlp"
    with pytest.raises(NotBilinearError, match=r"^blocks.2.mlp is a gated MLP"):
        as_factors(mlp)
    for hook in (SimpleNamespace(name="blocks.2.mlp.hook_out"), SimpleNamespace(name=None), SimpleNamespace()):
        mlp.hook_in = hook
        assert mlp_name(mlp) is None
    assert mlp_name(torch.nn.Linear(2, 2)) is None


@pytest.mark.parametrize(
    "mlp, kind",
    [
        (SimpleNamespace(gate=1, activation_name="relu"), "a gated MLP with activation 'relu': "),
        (SimpleNamespace(gate_proj=1, config=SimpleNamespace(act_fn="gelu")), "a gated MLP with activation 'gelu': "),
        (type("JointGateUpMLPBridge", (), {})(), "a gated MLP: "),
        (SimpleNamespace(**{"in": 1}, config=SimpleNamespace(hidden_act="silu")), "a plain MLP with activation 'silu'"),
        (type("MLPBridge", (), {})(), "a plain MLP: "),
    ],
    ids=["gate-attr", "gate_proj-config-act_fn", "Gate-in-name", "in-attr", "MLP-in-name"],
)
def test_the_kind_of_mlp_is_read_from_its_parts(mlp, kind):
    assert f" is {kind}" in str(not_bilinear(mlp, "L"))


def test_augment_works_on_any_batch_shape():
    """x [..., d_model] of any rank gets the constant 1 on its last axis; a wrong size names it."""
    factors = factors_of(random_layer(3, 5, True))
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    augmented = factors.augment(x)
    assert augmented.shape == (2, 4, 4)
    torch.testing.assert_close(augmented[..., :3], x, atol=0, rtol=0)
    assert (augmented[..., 3] == 1).all()
    with pytest.raises(ValueError) as refused:
        factors.augment(torch.ones(2, 5, 4))
    assert str(refused.value) == (
        "input of size 4 given, but this MLP reads vectors of size d_model=3 (its hook_in activations)."
    )
