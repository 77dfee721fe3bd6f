"""Where a converted or bilinearized model came from: what the model card states and the verification measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ATTRIBUTE = "hooked_bilinear_provenance"


@dataclass
class Provenance:
    """Source, conversion and the measured max |logit difference| of its verification (None: not verified).
    `compared`: which two models that figure compares (the model card states it beside the figure). `details`:
    further figures, each key saying what it measures."""

    source: str
    conversion: str
    base_model: str | None = None
    max_abs_logit_diff: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    compared: str = "this model against the source model"


def attach(model: Any, provenance: Provenance) -> None:
    """Record `provenance` on a model object (read back by save_pretrained / push_to_hub)."""
    setattr(model, ATTRIBUTE, provenance)


def provenance_of(model: Any) -> Provenance | None:
    """The Provenance recorded on a model, or None."""
    return getattr(model, ATTRIBUTE, None)
