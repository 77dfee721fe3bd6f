"""The annealed gate of the bilinearization recipe: `gate(x) = c * x * sigmoid(beta x)`, beta = 1 - alpha(t).

beta = 1 is SiLU (a SwiGLU MLP, with c = 1); beta = 0 is c * x / 2, a per-channel factor that folds into gate_proj,
leaving the bilinear MLP `down_proj(gate_proj(x) * up_proj(x))`. c is learnable in the paper's recipe (initialised to
ones) and absent (c = 1) otherwise.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Schedule = Literal["linear", "cosine", "exp"]
EXP_K = 1.05  # the "exp" schedule's constant


class AnnealedGate(nn.Module):
    """`c * x * sigmoid(beta x)` with a settable scalar beta (a buffer) and, with `d_hidden`, a learnable per-channel
    scale c of that size (initialised to ones)."""

    beta: torch.Tensor
    c: nn.Parameter | None

    def __init__(self, beta: float = 1.0, d_hidden: int | None = None) -> None:
        super().__init__()
        self.register_buffer("beta", torch.tensor(float(beta)), persistent=False)
        self.c = nn.Parameter(torch.ones(d_hidden)) if d_hidden is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = x * torch.sigmoid(self.beta.to(x.dtype) * x)
        return gated if self.c is None else self.c.to(x.dtype) * gated


def alpha(step: int, anneal_steps: int, schedule: Schedule = "cosine") -> float:
    """Decay alpha(t) in [0, 1] at `step`: 0 at the start, 1 from `anneal_steps` on (t = step / anneal_steps)."""
    t = min(max(step / max(anneal_steps, 1), 0.0), 1.0)
    if schedule == "linear":
        return t
    if schedule == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * t))
    if schedule == "exp":  # min(t e^{k(1 - t)}, 1): fast, then slow; reaches 1 at t ~ 0.91 for k = 1.05
        return min(t * math.exp(EXP_K * (1.0 - t)), 1.0)
    raise ValueError(f"schedule={schedule!r} is not 'linear', 'cosine' or 'exp'.")


def beta_at(step: int, anneal_steps: int, schedule: Schedule = "cosine") -> float:
    """beta = 1 - alpha(t): 1 (SiLU) at step 0, 0 (bilinear) from `anneal_steps` on."""
    return 1.0 - alpha(step, anneal_steps, schedule)
