"""The headline numbers of a modular-addition model: brute-force accuracy and margins, the certificate, and the
compressed explanation (what `hooked-bilinear modadd certify --json` prints)."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float

from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.toy.modadd.certify import Certificate, brute_force_flops, certify
from hooked_bilinear.toy.modadd.explanation import explain, logit_table_fraction
from hooked_bilinear.toy.modadd.task import ModAddTask
from hooked_bilinear.toy.modadd.train import answer_logits


def all_logits(model: BilinearForCausalLM, task: ModAddTask, dtype: torch.dtype = torch.float64
               ) -> Float[torch.Tensor, "p p vocab"]:
    """Brute force: the model's answer logits on all p^2 inputs, computed in `dtype` (on a copy of the model)."""
    copy = BilinearForCausalLM(model.config).to(dtype)
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        return answer_logits(copy.eval(), task.tokens()).reshape(task.p, task.p, -1).double()


def margins(logits: Float[torch.Tensor, "p p vocab"], task: ModAddTask) -> Float[torch.Tensor, "p p"]:
    """logit of (a + b) mod p minus the largest other logit, for every (a, b)."""
    index = task.labels().reshape(task.p, task.p)[..., None]
    correct = logits.gather(2, index)[..., 0]
    return correct - logits.scatter(2, index, -torch.inf).amax(2)


def parameter_count(model: BilinearForCausalLM) -> int:
    return sum(p.numel() for p in model.parameters())


def report(model: BilinearForCausalLM, frequencies: list[int] | None = None,
           certificate: Certificate | None = None) -> dict[str, Any]:
    """Accuracy (float32 model, all p^2 inputs), true and certified minimum margin (the certificate bounds the
    model in exact arithmetic; the float64 brute force stands in for it), costs and compression."""
    task = ModAddTask.from_config(model.config)
    logits32 = all_logits(model, task, torch.float32)
    labels = task.labels().reshape(task.p, task.p)
    true_margin = margins(all_logits(model, task), task)
    certificate = certificate or certify(model, task, frequencies)
    explanation = explain(model, task, certificate.frequencies)
    brute = brute_force_flops(model, task)
    accuracy = (logits32.argmax(-1) == labels).double().mean().item()
    return {
        "p": task.p,
        "input_format": task.input_format,
        "accuracy": accuracy,
        "true_min_margin": true_margin.min().item(),
        "certified_min_margin": certificate.certified_min_margin,
        "certified_accuracy": certificate.certified_accuracy,
        "normalised_bound": certificate.certified_accuracy / accuracy if accuracy else 0.0,
        "sound": bool((certificate.margin <= true_margin).all()),
        "proof_flops": certificate.proof_flops,
        "brute_force_flops": brute,
        "cost_ratio": certificate.proof_flops / brute,
        "frequencies": certificate.frequencies,
        "explanation_parameters": explanation.parameter_count,
        "model_parameters": parameter_count(model),
        "compression_ratio": parameter_count(model) / explanation.parameter_count,
        "explanation_accuracy": (explanation.logits().argmax(-1) == labels).double().mean().item(),
        "logit_variance_explained": logit_table_fraction(all_logits(model, task), certificate.frequencies),
        "proof_flops_by_step": certificate.flops,
    }
