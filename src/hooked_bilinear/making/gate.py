"""The annealed gate of the bilinearization recipe: `gate(x) = x * sigmoid(beta x)`, beta = 1 - alpha(t).

beta = 1 is SiLU (a SwiGLU MLP); beta = 0 is x / 2, a constant factor that folds into gate_proj, leaving the bilinear
MLP `down_proj(gate_proj(x) * up_proj(x))`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Schedule = Literal["linear", "cosine"]


class AnnealedGate(nn.Module):
    """`x * sigmoid(beta x)` with a settable scalar beta (a buffer shared by every MLP that holds this module)."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("beta", torch.tensor(float(beta)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta.to(x.dtype) * x)


def alpha(step: int, anneal_steps: int, schedule: Schedule = "cosine") -> float:
    """Decay alpha(t) in [0, 1] at `step`: 0 at the start, 1 from `anneal_steps` on (t = step / anneal_steps)."""
    t = min(max(step / max(anneal_steps, 1), 0.0), 1.0)
    if schedule == "linear":
        return t
    if schedule == "cosine":
        return 0.5 * (1.0 - math.cos(math.pi * t))
    raise ValueError(f"schedule={schedule!r} is not 'linear' or 'cosine'.")


def beta_at(step: int, anneal_steps: int, schedule: Schedule = "cosine") -> float:
    """beta = 1 - alpha(t): 1 (SiLU) at step 0, 0 (bilinear) from `anneal_steps` on."""
    return 1.0 - alpha(step, anneal_steps, schedule)
