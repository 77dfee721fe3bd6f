"""The recipes: "paper" is the default (linear beta over the first 30%, learnable gate scale, lr 1e-4, weight decay
0.1, bf16 on CUDA); "cosine80" keeps the first default; the fold of a learned scale is exact."""

from __future__ import annotations

import copy

import pytest
import torch

from hooked_bilinear.making.bilinearize import bilinearize, fold_gate
from hooked_bilinear.making.gate import AnnealedGate, beta_at
from hooked_bilinear.making.recipe import COSINE80, PAPER, get_recipe
from hooked_bilinear.publishing.provenance import provenance_of
from tests.llama import tiny_llama


def test_recipes_hold_the_stated_settings():
    assert (PAPER.schedule, PAPER.anneal_fraction, PAPER.lr, PAPER.weight_decay, PAPER.bf16, PAPER.learnable_scale) == (
        "linear",
        0.3,
        1e-4,
        0.1,
        True,
        True,
    )
    assert (COSINE80.schedule, COSINE80.anneal_fraction, COSINE80.lr, COSINE80.learnable_scale) == (
        "cosine",
        0.8,
        3e-4,
        False,
    )
    assert get_recipe("paper") is PAPER
    with pytest.raises(ValueError, match="cosine80"):
        get_recipe("nope")
    # Linear 1 -> 0 over the first 30% of 100 steps, then 0.
    assert [beta_at(s, 30, PAPER.schedule) for s in (0, 15, 30, 99)] == [1.0, 0.5, 0.0, 0.0]


def test_paper_recipe_is_the_default(tmp_path):
    tokens = torch.arange(3000) % 300
    model = bilinearize(
        tiny_llama("silu", std=0.05),
        tokens,
        steps=20,
        batch_size=2,
        seq_len=16,
        warmup_steps=2,
        progress=False,
        checkpoint_dir=tmp_path / "run",
    )
    conversion = provenance_of(model).conversion
    assert "recipe 'paper'" in conversion and "lr 0.0001" in conversion and "weight decay 0.1" in conversion
    assert "over 6 steps (linear schedule)" in conversion and "learnable c" in conversion
    betas = [float(line.split(",")[2]) for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert betas[:7] == pytest.approx([1 - s / 6 for s in range(7)]) and set(betas[6:]) == {0.0}


def test_fold_of_a_learned_gate_scale_is_exact():
    model = tiny_llama("silu", std=0.1)
    for layer in model.model.layers:
        gate = AnnealedGate(0.0, model.config.intermediate_size)
        with torch.no_grad():
            gate.c.uniform_(0.2, 3.0)
        layer.mlp.act_fn = gate
    annealed = copy.deepcopy(model)
    fold_gate(model)
    tokens = torch.randint(0, 330, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (model(tokens).logits - annealed(tokens).logits).abs().max().item()
    assert model.config.hidden_act == "linear" and difference <= 1e-5
