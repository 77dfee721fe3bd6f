"""The circuit's term-by-term logits equal the model's forward pass (float64) for every input, in every attention
mode: the decomposition the certificate relies on is exact."""

from __future__ import annotations

import torch

from hooked_bilinear.toy.modadd.circuit import exact_logits, read_circuit
from hooked_bilinear.toy.modadd.interval import Ledger
from hooked_bilinear.toy.modadd.report import all_logits


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
