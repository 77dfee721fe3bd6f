"""TransformerLens's own compatibility checks (transformer_lens.benchmarks) on a bridge, as one assertion."""

from __future__ import annotations

import torch
from transformer_lens import benchmarks


def assert_transformer_lens_benchmarks_pass(bridge, text: str, reference: torch.Tensor) -> None:
    """Forward pass (vs `reference` logits, atol 1e-5), hooks, run_with_cache and backward hooks all pass."""
    results = [
        benchmarks.benchmark_forward_pass(bridge, text, reference_logits=reference, atol=1e-5, rtol=0),
        benchmarks.benchmark_hook_functionality(bridge, text),
        benchmarks.benchmark_run_with_cache(bridge, text),
        benchmarks.benchmark_backward_hooks(bridge, text),
    ]
    for result in results:
        assert result.passed, str(result)
