"""The circuit's term-by-term logits equal the model's forward pass (float64) for every input, in every attention
mode: the decomposition the certificate relies on is exact. Its per-input evaluation (`circuit_logits`, the
uncompressed proof) does too, and its balls contain the logits computed in rational arithmetic."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from hooked_bilinear.toy.modadd.circuit import (
    Circuit,
    Family,
    _weights,
    circuit_logits,
    exact_logits,
    read_circuit,
    scale_slack,
)
from hooked_bilinear.toy.modadd.interval import Ball, Ledger
from hooked_bilinear.toy.modadd.report import all_logits
from hooked_bilinear.toy.modadd.task import ModAddTask
from hooked_bilinear.toy.modadd.train import ModAddTrainConfig, build_modadd_model


def test_terms_sum_to_the_forward_pass(random_model):
    model, task = random_model
    circuit = read_circuit(model, task, Ledger())
    reference = all_logits(model, task)
    assert reference.abs().max() > 0.1
    # float64 forward vs float64 terms; the trained-attention modes differ by the model's float32 rotary cos/sin
    assert torch.allclose(exact_logits(circuit, Ledger()), reference, atol=1e-5 * reference.abs().max().item(), rtol=0)


def test_uniform_attention_merges_families_and_trained_attention_keeps_heads(random_model):
    model, task = random_model
    circuit = read_circuit(model, task, Ledger())
    kinds = [f.kind for f in circuit.families]
    if task.uniform_attention:
        assert circuit.uniform_attention and sorted(kinds) == ["a", "b"]
    else:
        assert not circuit.uniform_attention and kinds.count("a") == model.config.n_head


def test_circuit_logits_equal_the_forward_pass_with_small_radii(random_model):
    model, task = random_model
    circuit = read_circuit(model, task, Ledger())
    reference = all_logits(model, task).reshape(task.p**2, -1)
    a, b = task.operands()
    ball = circuit_logits(circuit, a, b, Ledger())
    scale = reference.abs().max().item()
    assert torch.allclose(ball.mid, reference, atol=1e-5 * scale, rtol=0)
    assert 0 < ball.rad.max() < 1e-4 * scale


def _exact_logits(model, a: int, b: int, s: Fraction) -> list[Fraction]:
    """The uniform-attention model in rational arithmetic on its float32 weights: x = W_E[b] + s (V_a + V_b) / 2
    with V_t = W_O W_V W_E[t], logit = W_U (x + W_out ((W_gate x) * (W_in x)))."""

    def F(t):
        return [[Fraction(v) for v in row] for row in t.double().tolist()]

    def matvec(M, v):
        return [sum(m * x for m, x in zip(row, v)) for row in M]

    d, h = model.config.d_model, model.config.d_hidden
    W_E, W_O = F(model.transformer.wte.weight), F(model.transformer.h[0].attn.o.weight)
    W_V = F(model.transformer.h[0].attn.qkv.weight[2 * d :])
    w = F(model.transformer.h[0].mlp.w.weight)
    W_out, W_U = F(getattr(model.transformer.h[0].mlp, model.config.mlp_down_name).weight), F(model.lm_head.weight)
    mixed = matvec(W_O, matvec(W_V, [(x + y) / 2 for x, y in zip(W_E[a], W_E[b])]))
    x = [e + s * m for e, m in zip(W_E[b], mixed)]
    hidden = [g * i for g, i in zip(matvec(w[:h], x), matvec(w[h:], x))]
    return matvec(W_U, [xi + oi for xi, oi in zip(x, matvec(W_out, hidden))])


def test_circuit_logits_contain_the_exact_rational_logits():
    """On a uniform-attention model: without a softmax, the logits are rational in the float32 weights."""
    task = ModAddTask(p=13, input_format="a b", uniform_attention=True, train_fraction=0.5)
    model = build_modadd_model(task, ModAddTrainConfig(d_model=32, n_head=4, d_hidden=48, init_std=0.3))
    circuit = read_circuit(model, task, Ledger())
    a, b = torch.tensor([0, 3, 7, 12]), torch.tensor([5, 3, 12, 0])
    ball = circuit_logits(circuit, a, b, Ledger())
    scale = model.config.attn_residual_scale  # 1/sqrt(2): the ball covers it and its float32 rounding
    for s in (Fraction(scale), Fraction(torch.tensor(scale, dtype=torch.float32).item())):
        for row, (ai, bi) in enumerate(zip(a.tolist(), b.tolist())):
            for c, exact in enumerate(_exact_logits(model, ai, bi, s)):
                assert abs(exact - Fraction(ball.mid[row, c].item())) <= Fraction(ball.rad[row, c].item())


@pytest.mark.parametrize("uncertain", ["gate", "linear", "direct", "coef", "unembed_out"])
def test_circuit_logits_radii_cover_every_point_of_the_input_balls(uncertain):
    """A synthetic circuit whose balls are wide in one place: the logits at random points (and corners) of the
    input balls, computed plainly, lie inside the output balls."""
    p, h, vocab = 5, 6, 7
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(tuple(shape), generator=generator, dtype=torch.float64)

    def ball(name: str, *shape: int) -> Ball:
        return Ball(rand(*shape), (0.05 * rand(*shape).abs()) if name == uncertain else torch.zeros(()))

    families = [
        Family(
            kind,
            kind,
            Ball.exact(torch.zeros(n, 1)),
            coef,
            ball("gate", n, h),
            ball("linear", n, h),
            ball("direct", n, vocab),
        )
        for kind, n, coef in (("a", p, ball("coef", p, p)), ("b", p, ball("coef")), ("1", 1, ball("coef")))
    ]
    task = ModAddTask(p=p, input_format="a b =", train_fraction=0.5)
    circuit = Circuit(task, families, ball("unembed_out", vocab, h), uniform_attention=False)
    a, b = task.operands()
    logits = circuit_logits(circuit, a, b, Ledger())
    index = {"a": a, "b": b, "1": torch.zeros_like(a)}

    def point(x: Ball, corner: bool) -> torch.Tensor:
        step = (
            torch.randint(0, 2, x.mid.shape, generator=generator) * 2.0 - 1
            if corner
            else torch.rand(x.mid.shape, generator=generator, dtype=torch.float64) * 2 - 1
        )
        return x.mid + step * x.rad

    for trial in range(40):
        total = {name: 0.0 for name in ("gate", "linear", "direct")}
        for f in families:
            coef = point(f.coef, trial % 2 == 0)
            coef = coef if coef.ndim == 0 else coef[a, b]
            for name in total:
                total[name] = total[name] + coef[..., None] * point(getattr(f, name), trial % 2 == 0)[index[f.kind]]
        value = (total["gate"] * total["linear"]) @ point(circuit.unembed_out, trial % 2 == 0).T + total["direct"]
        assert ((value - logits.mid).abs() <= logits.rad).all()
    assert logits.rad.max() > 1e-3, "the wide ball must show in the output"


def test_scale_slack_covers_every_residual_stream_within_its_radius(uniform_model):
    """Uniform attention: the families sit at the coefficient's midpoint and `slack` bounds how far any logit moves
    when the residual stream moves by a vector of norm <= m. Checked against random moves of norm exactly m,
    scaled up so the quadratic part shows, logits computed directly from the weights in float64."""
    model, task = uniform_model
    circuit = read_circuit(model, task, Ledger())
    weights = _weights(model, task)
    m = torch.tensor(0.05, dtype=torch.float64)
    slack = scale_slack(circuit, weights, m, Ledger())
    W_gate, W_in, W_U, W_out = (weights[k].double() for k in ("W_gate", "W_in", "W_U", "W_out"))
    a, b = task.operands()
    x = sum(f.vectors.mid[{"a": a, "b": b, "1": torch.zeros_like(a)}[f.kind]] for f in circuit.families)

    def logits(x: torch.Tensor) -> torch.Tensor:
        return ((x @ W_gate.T) * (x @ W_in.T)) @ (W_U @ W_out).T + x @ W_U.T

    g = torch.Generator().manual_seed(0)
    worst = torch.zeros_like(slack)
    for _ in range(20):
        move = torch.randn(x.shape, generator=g, dtype=torch.float64)
        move = m * move / move.norm(dim=1, keepdim=True)
        worst = torch.maximum(worst, (logits(x + move) - logits(x)).abs().amax(0))
    assert (worst <= slack).all() and (worst > 0.05 * slack).any()
    assert 0 < circuit.slack.max() < 1e-4 * x.abs().max()  # the float32 constant's rounding: tiny, yet counted
