"""The headline numbers of a modular-addition model: brute-force accuracy and margins, the certificate, and the
compressed explanation (what `hooked-bilinear modadd certify --json` prints)."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float

from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.toy.modadd.certify import Certificate, brute_force_flops, certify, certify_exact
from hooked_bilinear.toy.modadd.explanation import explain, logit_table_fraction
from hooked_bilinear.toy.modadd.task import ModAddTask
from hooked_bilinear.toy.modadd.train import answer_logits


def all_logits(
    model: BilinearForCausalLM, task: ModAddTask, dtype: torch.dtype = torch.float64
) -> Float[torch.Tensor, "p p vocab"]:
    """Brute force: the model's answer logits on all p^2 inputs, computed in `dtype` (on a copy of the model).

    Args:
        model: a one-layer modular-addition model (not modified).
        task: its task.
        dtype: the dtype the copy runs in (default float64).

    Returns:
        The answer logits [p, p, vocab], indexed by (a, b), returned as float64.
    """
    copy = BilinearForCausalLM(model.config)
    torch.nn.Module.to(copy, dtype)  # transformers' functools.wraps'd `to` hides its signature from mypy
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        return answer_logits(copy.eval(), task.tokens()).reshape(task.p, task.p, -1).double()


def margins(logits: Float[torch.Tensor, "p p vocab"], task: ModAddTask) -> Float[torch.Tensor, "p p"]:
    """logit of (a + b) mod p minus the largest other logit, for every (a, b).

    Args:
        logits: the answer logits on all inputs [p, p, vocab] (e.g. `all_logits`).
        task: the task, for the correct answers.

    Returns:
        The margins [p, p]; negative where the model answers wrong.
    """
    index = task.labels().reshape(task.p, task.p)[..., None]
    correct = logits.gather(2, index)[..., 0]
    return correct - logits.scatter(2, index, -torch.inf).amax(2)


def parameter_count(model: BilinearForCausalLM) -> int:
    return sum(p.numel() for p in model.parameters())


def modadd_report(
    model: BilinearForCausalLM, frequencies: list[int] | None = None, certificate: Certificate | None = None
) -> dict[str, Any]:
    """Accuracy (float32 model, all p^2 inputs), true and certified minimum margin (the certificates bound the
    model in exact arithmetic; the float64 brute force stands in for it), costs and compression.

    Two proofs run: the compressed explanation's (`certificate`, default `certify(model, task, frequencies)`, with
    the exact fallback) and the uncompressed one (`certify_exact`). `certified_*`, `proof_flops` and `cost_ratio`
    are the better of the two (higher certified accuracy, then lower cost; named in `proof`); `compressed_*` is what
    the kept frequencies prove alone, `fallback_cost_ratio` the compressed proof with its fallback.

    Args:
        model: a one-layer modular-addition model.
        frequencies: the frequencies the compressed proof keeps (default: `certify`'s, the key frequencies).
        certificate: an already computed compressed certificate to use (default: `certify(model, task, frequencies)`).

    Returns:
        A JSON-ready dict: "p", "input_format", "accuracy", "true_min_margin", "certified_min_margin",
        "certified_accuracy", "normalised_bound", "sound", "proof", "proof_flops", "brute_force_flops", "cost_ratio",
        "frequencies", "compressed_certified_accuracy", "compressed_cost_ratio", "fallback_cost_ratio",
        "exact_circuit_cost_ratio", "explanation_parameters", "model_parameters", "compression_ratio",
        "explanation_accuracy", "logit_variance_explained" and "proof_flops_by_step" (flops per step of each proof).
    """
    task = ModAddTask.from_config(model.config)
    logits32 = all_logits(model, task, torch.float32)
    labels = task.labels().reshape(task.p, task.p)
    true_margin = margins(all_logits(model, task), task)
    compressed = certificate or certify(model, task, frequencies)
    exact = certify_exact(model, task)
    best, proof = min(
        ((compressed, "compressed explanation + exact fallback"), (exact, "exact circuit")),
        key=lambda c: (-c[0].certified_accuracy, c[0].proof_flops),
    )
    explanation = explain(model, task, compressed.frequencies)
    brute = brute_force_flops(model, task)
    accuracy = (logits32.argmax(-1) == labels).double().mean().item()
    return {
        "p": task.p,
        "input_format": task.input_format,
        "accuracy": accuracy,
        "true_min_margin": true_margin.min().item(),
        "certified_min_margin": best.certified_min_margin,
        "certified_accuracy": best.certified_accuracy,
        "normalised_bound": best.certified_accuracy / accuracy if accuracy else 0.0,
        "sound": bool((compressed.margin <= true_margin).all() and (exact.margin <= true_margin).all()),
        "proof": proof,
        "proof_flops": best.proof_flops,
        "brute_force_flops": brute,
        "cost_ratio": best.proof_flops / brute,
        "frequencies": compressed.frequencies,
        "compressed_certified_accuracy": compressed.compressed_accuracy,
        "compressed_cost_ratio": compressed.compressed_flops / brute,
        "fallback_cost_ratio": compressed.proof_flops / brute,
        "exact_circuit_cost_ratio": exact.proof_flops / brute,
        "explanation_parameters": explanation.parameter_count,
        "model_parameters": parameter_count(model),
        "compression_ratio": parameter_count(model) / explanation.parameter_count,
        "explanation_accuracy": (explanation.logits().argmax(-1) == labels).double().mean().item(),
        "logit_variance_explained": logit_table_fraction(all_logits(model, task), compressed.frequencies),
        "proof_flops_by_step": {"compressed": compressed.flops, "exact circuit": exact.flops},
    }
