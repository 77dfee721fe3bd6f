"""Output directions through the final norm and unembedding, contrasts, top-token read-outs, non-bilinear refusal."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch

from hooked_bilinear import NotBilinearError, analysis
from hooked_bilinear.analysis import (
    BilinearFactors,
    contrast_directions,
    mlp_factors,
    top_tokens,
    unembedding_directions,
)
from tests.analysis.factories import factors_of, random_layer
from tests.analysis.models import random_model


@pytest.mark.parametrize("fmt", ["current", "legacy"])
def test_token_direction_reads_the_logit_of_the_normalised_stream(fmt):
    model, _, state = random_model(fmt)
    tokens = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(0))
    logits, cache = model.run_with_cache(tokens)
    x = cache["blocks.1.hook_resid_post"]
    x_hat = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-8)  # what the ignored 1/rms scale divides out
    u = unembedding_directions(model)  # [vocab, d_model]
    offset = state["transformer.n_f.norm.bias"] @ state["lm_head.weight"].T if fmt == "legacy" else 0.0
    torch.testing.assert_close(x_hat @ u.T + offset, logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(unembedding_directions(model, [3, 5]), u[[3, 5]])


def test_contrast_is_token_minus_mean_of_the_others():
    model, _, _ = random_model()
    u = unembedding_directions(model)
    contrast = contrast_directions(model, 7)
    others = torch.cat([u[:7], u[8:]]).mean(0)
    torch.testing.assert_close(contrast[0], u[7] - others, atol=1e-6, rtol=1e-6)


def test_bad_token_ids_are_refused():
    model, _, _ = random_model()
    with pytest.raises(ValueError, match=r"\[0, 40\)"):
        unembedding_directions(model, [0, 40])
    with pytest.raises(TypeError, match="integer ids"):
        unembedding_directions(model, torch.tensor([0.5]))


@pytest.mark.parametrize("through", ["unembed", "embed"])
def test_top_tokens_rank_the_scores(through):
    model, _, state = random_model("legacy")
    eigen = model.blocks[1].mlp.eigendecompose(unembedding_directions(model, 4)[0], k=2)
    table = top_tokens(model, eigen.v, k=5, through=through, layer=1)
    if through == "unembed":
        readout = state["lm_head.weight"] * state["transformer.n_f.norm.weight"]
    else:
        readout = state["transformer.wte.weight"] * state["transformer.h.1.n2.norm.weight"]
    scores = eigen.v @ readout.T
    torch.testing.assert_close(table.top_scores, scores.topk(5, dim=1).values, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(table.bottom_scores, scores.topk(5, dim=1, largest=False).values, atol=1e-5, rtol=1e-5)
    assert table.top_tokens[0] == [str(i) for i in scores[0].topk(5).indices.tolist()]
    assert "[1] +" in str(table)


def test_top_tokens_bad_input():
    model, _, _ = random_model()
    with pytest.raises(ValueError, match="pass layer="):
        top_tokens(model, torch.randn(32), through="embed")
    with pytest.raises(ValueError, match="d_model=32"):
        top_tokens(model, torch.randn(31))
    with pytest.raises(ValueError, match="through must be"):
        top_tokens(model, torch.randn(32), through="logits")


def analysis_calls(model: Any) -> dict[str, Callable[[], Any]]:
    """Every analysis entry point, aimed at layer 1's MLP of `model`."""
    mlp, u = model.blocks[1].mlp, torch.randn(2, model.cfg.d_model)
    x, tokens = torch.randn(3, model.cfg.d_model), torch.randint(0, 40, (1, 6))
    # a truncated module of another (bilinear) layer: the entry point refuses the gated MLP before it reads this
    truncated = analysis.truncate(factors_of(random_layer(model.cfg.d_model, 8, False)), u, 1)
    calls: dict[str, Callable[[], Any]] = {
        "mlp_factors": lambda: mlp_factors(model, 1),
        "BilinearFactors.from_mlp": lambda: BilinearFactors.from_mlp(mlp),
        "truncation_curve": lambda: analysis.truncation_curve(model, 1, truncated, tokens, ks=[1], progress=False),
        "output_gram": lambda: analysis.output_gram(mlp),
    }
    arguments = {
        "factors": (),
        "interaction_matrix": (u,),
        "eigendecompose": (u, 2),
        "tensor": (),
        "decompose": (x, u),
        "hosvd": (2,),
        "truncate": (u, 2),
    }
    for name, args in arguments.items():
        calls[f"mlp.{name}"] = lambda name=name, args=args: getattr(mlp, name)(*args)  # the component's methods
        if name != "factors":  # the functions of hooked_bilinear.analysis, handed the component
            calls[f"analysis.{name}"] = lambda name=name, args=args: getattr(analysis, name)(mlp, *args)
    return calls


@pytest.mark.parametrize(
    "mlp,kind",
    [
        (dict(gate="silu"), "a gated MLP with activation 'silu'"),
        (dict(gate="relu"), "a gated MLP with activation 'relu'"),
        (dict(bilinear=False, gate="gelu"), "a plain MLP with activation 'gelu'"),
    ],
    ids=["swiglu", "reglu", "plain"],
)
def test_gated_or_plain_mlp_is_not_analysed(mlp, kind):
    model, _, _ = random_model(**mlp)
    calls = analysis_calls(model)
    assert len(calls) == 17
    for entry, call in calls.items():
        with pytest.raises(NotBilinearError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"blocks.1.mlp is {kind}"), (entry, message)
        assert "need a bilinear MLP" in message and "hooked_bilinear.bilinearize" in message, (entry, message)
    with pytest.raises(IndexError, match="layers 0..1"):
        mlp_factors(model, 2)


def _same(a: Any, b: Any) -> bool:
    """Equal results: tensors entrywise, dataclasses field by field, modules by their state."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    if isinstance(a, torch.nn.Module):
        one, two = a.state_dict(), b.state_dict()
        return one.keys() == two.keys() and all(_same(one[k], two[k]) for k in one)
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def test_every_entry_point_runs_on_a_bilinear_mlp():
    """Every entry point runs on the bilinear MLP and analyses that MLP: the component's method and the analysis
    function agree, the factors are the MLP's weights, and B and Q_u are those of out(x) = ((x W_gate) * (x W_in)) W_out
    (brute force through the MLP's factors)."""
    model, _, _ = random_model()
    calls = analysis_calls(model)
    results = {entry: call() for entry, call in calls.items() if entry != "truncation_curve"}  # needs a truncated
    assert len(results) == 16  # module: tests/analysis/test_truncation.py
    for entry, result in results.items():
        if entry.startswith("mlp.") and f"analysis.{entry[4:]}" in results:
            assert _same(result, results[f"analysis.{entry[4:]}"]), entry
    factors = results["mlp.factors"]
    assert _same(factors, results["mlp_factors"]) and _same(factors, results["BilinearFactors.from_mlp"])
    mlp = model.blocks[1].mlp
    x = torch.randn(5, factors.d_in)
    out = ((x @ factors.W_gate) * (x @ factors.W_in)) @ factors.W_out
    B = results["mlp.tensor"]
    torch.testing.assert_close(torch.einsum("oij,bi,bj->bo", B, x, x), out, rtol=1e-4, atol=1e-5)
    assert torch.allclose(B, B.transpose(1, 2))
    u = torch.randn(2, factors.d_out)
    Q = analysis.interaction_matrix(mlp, u)
    torch.testing.assert_close(Q, torch.einsum("ko,oij->kij", u, B), rtol=1e-4, atol=1e-5)
    gram = torch.einsum("oij,pij->op", B, B)  # <B[o], B[o']>_F
    torch.testing.assert_close(results["output_gram"], gram, rtol=1e-4, atol=1e-4 * gram.abs().max().item())
