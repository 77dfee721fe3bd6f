"""Splicing an SAE into a bridge: its reconstruction replaces the activations of its hook, and the loss it adds.

`use_error_term=True` adds back the SAE's error `x - x_hat`, so the forward pass is unchanged while the features
(and gradients through them) are live, as SAELens's `use_error_term`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple

import torch
from beartype import beartype

from hooked_bilinear.errors import SAEError


def _hook_name(model: Any, sae: Any, hook_name: str | None) -> str:
    name = hook_name or getattr(sae, "hook_name", None)
    if name is None:
        raise SAEError("this SAE does not say which hook it reads (metadata hook_name): pass hook_name=.")
    if name not in model.hook_dict:
        raise SAEError(f"the model has no hook {name!r}; pass the hook the SAE was trained on as hook_name=.")
    return name


def splice_hook(sae: Any, use_error_term: bool = False) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """A forward hook that replaces an activation by the SAE's reconstruction (plus its error when asked)."""

    def hook(x: torch.Tensor, hook: Any = None) -> torch.Tensor:
        x_hat = sae.decode(sae.encode(x)).to(x.dtype)
        return x_hat + (x - x_hat).detach() if use_error_term else x_hat

    return hook


@beartype
def splice(
    model: Any, sae: Any, *, use_error_term: bool = False, hook_name: str | None = None
) -> AbstractContextManager[Any]:
    """Within the block, `model` runs with the SAE spliced in at its hook (`sae.hook_name` unless given). The
    arguments are checked here, at the call, not when the block is entered.

    Args:
        model: a hooked model (a bridge or `HookedTransformer`) with `hook_dict` and `hooks`.
        sae: the SAE (this package's or SAELens's: `encode` and `decode`).
        use_error_term: add back the SAE's error `x - x_hat` (detached), so the output is unchanged (default False).
        hook_name: the hook to splice at (default: `sae.hook_name`).

    Returns:
        A context manager; entering it yields `model` with the SAE's hook on.

    Raises:
        SAEError: no hook name is given nor recorded by the SAE, or the model has no such hook.
    """
    name = _hook_name(model, sae, hook_name)
    return _spliced(model, name, splice_hook(sae, use_error_term))


@contextmanager
def _spliced(model: Any, name: str, hook: Callable[..., Any]) -> Iterator[Any]:
    with model.hooks(fwd_hooks=[(name, hook)]):
        yield model


class SpliceLoss(NamedTuple):
    """Mean next-token loss (nats/token): clean, with the SAE spliced in, and with the hook zero-ablated.
    `added = spliced - clean` (Fig. 23's measure); `recovered = (zero - spliced) / (zero - clean)`."""

    clean: float
    spliced: float
    zero_ablated: float

    @property
    def added(self) -> float:
        return self.spliced - self.clean

    @property
    def recovered(self) -> float:
        return (self.zero_ablated - self.spliced) / (self.zero_ablated - self.clean)


@beartype
def splice_loss(
    model: Any, sae: Any, tokens: torch.Tensor, *, hook_name: str | None = None, batch_size: int = 32
) -> SpliceLoss:
    """SpliceLoss over token sequences [n_seq, pos].

    Args:
        model: a hooked model (a bridge or `HookedTransformer`) that computes `return_type="loss"`.
        sae: the SAE (this package's or SAELens's: `encode` and `decode`).
        tokens: token ids [n_seq, pos].
        hook_name: the hook the SAE reads (default: `sae.hook_name`).
        batch_size: sequences per forward pass (default 32).

    Returns:
        `SpliceLoss`: the clean, spliced and zero-ablated mean losses in nats per token (each batch's mean weighted by
        its number of sequences), with `added` and `recovered`.

    Raises:
        SAEError: no hook name is given nor recorded by the SAE, or the model has no such hook.
    """
    name = _hook_name(model, sae, hook_name)
    totals = [0.0, 0.0, 0.0]
    hooks = [[], [(name, splice_hook(sae))], [(name, lambda x, hook: torch.zeros_like(x))]]
    with torch.no_grad():
        for start in range(0, tokens.shape[0], batch_size):
            batch = tokens[start : start + batch_size]
            for i, fwd_hooks in enumerate(hooks):
                loss = model.run_with_hooks(batch, return_type="loss", fwd_hooks=fwd_hooks)
                totals[i] += loss.item() * batch.shape[0]
    clean, spliced, zero = (t / tokens.shape[0] for t in totals)
    return SpliceLoss(clean, spliced, zero)
