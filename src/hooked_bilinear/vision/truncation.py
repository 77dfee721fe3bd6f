"""Truncation: the classifier keeping only the top-k eigencomponents (by |lambda|) of every class (Fig. 5B).

`analysis.truncate` on the class directions U (rows u_c) gives a bilinear layer `sum_cj lambda_cj (v_cj . e')^2 A_c`
with A = pinv(U)^T; the head maps it to `U A^T = I` times those sums, so with it in place of the layer the logits
are exactly `sum_{j<=k} lambda_cj (v_cj . e')^2 (+ b_c)`. It is swapped in through the model's hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped

from hooked_bilinear.analysis.truncation import TruncatedBilinearMLP
from hooked_bilinear.vision.model import BilinearClassifier


class TruncationAccuracy(NamedTuple):
    """Test accuracy per number k of kept eigencomponents per class; full: the untruncated model's."""

    ks: list[int]
    accuracy: list[float]
    full: float


@jaxtyped(typechecker=beartype)
def truncated_logits(
    model: BilinearClassifier, pixels: Float[torch.Tensor, "batch n_pixels"], module: TruncatedBilinearMLP | None
) -> Float[torch.Tensor, "batch n_classes"]:
    """The model's logits with its bilinear layer's output (hook_post) replaced by `module(e)`; None keeps no
    component at all (the layer outputs zero).

    Args:
        model: the classifier.
        pixels: flat images [batch, n_pixels].
        module: the replacement layer (e.g. `model.mlp.truncate(model.class_directions(), k)`), or None for a zero
            output.

    Returns:
        The logits [batch, n_classes] (computed without gradients).
    """
    stash: list[torch.Tensor] = []

    def keep_input(e: torch.Tensor, hook: Any) -> torch.Tensor:
        stash[:] = [e]
        return e

    def swap_output(post: torch.Tensor, hook: Any) -> torch.Tensor:
        return torch.zeros_like(post) if module is None else module(stash[0]).to(post.dtype)

    with torch.no_grad():
        return model.run_with_hooks(pixels, fwd_hooks=[("mlp.hook_in", keep_input), ("mlp.hook_post", swap_output)])


@jaxtyped(typechecker=beartype)
def truncation_accuracy(
    model: BilinearClassifier,
    pixels: Float[torch.Tensor, "n n_pixels"],
    labels: Int[torch.Tensor, " n"],
    ks: Sequence[int],
    dtype: torch.dtype = torch.float64,
) -> TruncationAccuracy:
    """Accuracy keeping the top-k eigencomponents of every class, for each k in `ks` (0 <= k <= d_in).

    Args:
        model: the classifier.
        pixels: the test images [n, n_pixels].
        labels: their labels [n].
        ks: the numbers of eigencomponents kept per class, each in 0..d_in (0: the layer outputs zero).
        dtype: the dtype of the eigendecomposition (default float64).

    Returns:
        `TruncationAccuracy`: ks, the accuracy for each, and the untruncated model's accuracy (full).

    Raises:
        ValueError: `ks` is empty or holds a value outside 0..d_in.
    """
    ks = list(ks)
    d_in = model.mlp.factors().d_in
    if not ks or min(ks) < 0 or max(ks) > d_in:
        raise ValueError(f"ks must be a non-empty list of integers in 0..{d_in} (the size of Q_c), got {ks}.")
    largest = model.mlp.truncate(model.class_directions(), k=max(max(ks), 1), dtype=dtype)
    accuracies = []
    for k in ks:
        logits = truncated_logits(model, pixels, largest.keep(k) if k > 0 else None)
        accuracies.append((logits.argmax(-1) == labels).double().mean().item())
    with torch.no_grad():
        full = (model(pixels).argmax(-1) == labels).double().mean().item()
    return TruncationAccuracy(ks, accuracies, full)
