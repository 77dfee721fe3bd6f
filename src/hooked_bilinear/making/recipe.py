"""Named bilinearization recipes: the annealing schedule and the optimiser settings that go with it.

"paper" is the authors' TinyLlama-1.1B run as the paper describes it (App. J of "Weight-based Decomposition: A Case
for Bilinear MLPs", as issue 17 quotes it): beta going LINEARLY from 1 to 0 over the first 30% of the steps, AdamW at
lr 1e-4 with weight decay 0.1, bf16 where supported (CUDA); with the gate `c * x * sigmoid(beta x)` of the authors'
code (a learnable per-channel scale c, initialised to 1).
"authors-code" is what the published src/language/finetuning.py of tdooms/bilinear-decomposition does by default:
the same gate, alpha(f) = min(f e^{1.05 (1 - f)}, 1) over the whole run (beta reaches 0 at ~91%); that file does not
hold the optimiser settings, so lr and weight decay are the paper's.
"cosine80" is this package's first default: no learnable scale, a cosine schedule over the first 80%, lr 3e-4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the gate module imports torch; this one stays light for the command line's --help
    from hooked_bilinear.making.gate import Schedule


@dataclass(frozen=True)
class Recipe:
    """How beta is annealed and what the optimiser does. `bf16`: bf16 autocast on CUDA (CPU runs stay float32)."""

    name: str
    schedule: Schedule
    anneal_fraction: float
    lr: float
    weight_decay: float
    bf16: bool
    learnable_scale: bool


PAPER = Recipe(
    name="paper", schedule="linear", anneal_fraction=0.3, lr=1e-4, weight_decay=0.1, bf16=True, learnable_scale=True
)
COSINE80 = Recipe(
    name="cosine80", schedule="cosine", anneal_fraction=0.8, lr=3e-4, weight_decay=0.1, bf16=True, learnable_scale=False
)
AUTHORS_CODE = Recipe(
    name="authors-code", schedule="exp", anneal_fraction=1.0, lr=1e-4, weight_decay=0.1, bf16=True, learnable_scale=True
)
RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (PAPER, AUTHORS_CODE, COSINE80)}


def get_recipe(name: str | Recipe) -> Recipe:
    """A Recipe by name ("paper", "authors-code", "cosine80"), or the one given; ValueError naming the known ones."""
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        raise ValueError(f"recipe={name!r} is not one of {sorted(RECIPES)}.")
    return RECIPES[name]
