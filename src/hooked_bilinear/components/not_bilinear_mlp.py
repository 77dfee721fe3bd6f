"""TransformerLens's gated (GLU / SwiGLU) and plain MLP bridges, unchanged, plus the analysis methods of
`HookedBilinearMLP`, each raising `NotBilinearError` that names the layer and says what to do (instead of
`AttributeError: 'GatedMLPBridge' object has no attribute 'eigendecompose'`).

`from_pretrained` builds these for tdooms GLU variants (`gate: "silu"` ...), plain tdooms MLPs (`bilinear: false`) and
SwiGLU Llamas; their forward is TransformerLens's own.
"""

from __future__ import annotations

from typing import Any, NoReturn

from transformer_lens.model_bridge.generalized_components import JointGateUpMLPBridge, MLPBridge
from transformer_lens.model_bridge.generalized_components.gated_mlp import GatedMLPBridge

from hooked_bilinear.analysis.factors import not_bilinear


class NotBilinearAnalyses:
    """HookedBilinearMLP's analysis methods on an MLP that has an activation: each raises NotBilinearError."""

    is_bilinear = False

    def factors(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_bilinear(self)

    def interaction_matrix(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_bilinear(self)

    def eigendecompose(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_bilinear(self)

    def tensor(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_bilinear(self)

    def decompose(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_bilinear(self)

    def hosvd(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_bilinear(self)

    def truncate(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_bilinear(self)

    def feature_interactions(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_bilinear(self)


class GatedNotBilinearMLP(NotBilinearAnalyses, GatedMLPBridge):
    """TransformerLens's GatedMLPBridge (separate gate / in / out, e.g. a SwiGLU Llama)."""


class JointGateUpNotBilinearMLP(NotBilinearAnalyses, JointGateUpMLPBridge):
    """TransformerLens's JointGateUpMLPBridge (one fused gate-and-in projection: tdooms GLU variants)."""


class PlainNotBilinearMLP(NotBilinearAnalyses, MLPBridge):
    """TransformerLens's MLPBridge (no gate: tdooms `bilinear: false`). MLPBridge takes no config, so the activation's
    name, for messages, is given here."""

    def __init__(self, name: str | None, submodules: dict[str, Any], activation_name: str | None) -> None:
        super().__init__(name=name, submodules=submodules)
        self.activation_name = activation_name
