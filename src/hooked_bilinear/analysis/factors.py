"""The bilinear layer as three factor matrices, biases folded in: the common input of every analysis.

A bilinear MLP `out(x) = ((x W_gate + b_gate) * (x W_in + b_in)) W_out + b_out` (TransformerLens orientation) is
exactly a bias-free bilinear layer on the augmented input `x' = [x, 1]`:

    out(x) = ((x' W_gate') * (x' W_in')) W_out'

with `W_gate' = [[W_gate, e], [b_gate, 1]]`, `W_in' = [[W_in, e], [b_in, 1]]` and `W_out' = [[W_out], [b_out]]`,
i.e. the biases become a last input row and `b_out` becomes one extra hidden unit whose gate and in sides both
read the constant 1. Layers without biases are used as they are (`d_in = d_model`, nothing appended). Every
identity of the papers then holds for the factors without a bias term, e.g. `u . out(x) = x'^T Q_u x'`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from jaxtyping import Float
from transformers.activations import LinearActivation
from transformers.models.llama.modeling_llama import LlamaMLP

from hooked_bilinear.errors import NotBilinearError
from hooked_bilinear.modeling.configuration import split_gate_in
from hooked_bilinear.modeling.modeling import ACTIVATIONS
from hooked_bilinear.modeling.modeling import MLP as TdoomsMLP

LOW_PRECISION = (torch.float16, torch.bfloat16)


class BilinearWeights(Protocol):
    """What a bilinear layer (`is_bilinear = True`) shows the analyses: HookedBilinearMLP, TruncatedBilinearMLP,
    the image classifiers' layer."""

    @property
    def W_gate(self) -> torch.Tensor: ...
    @property
    def W_in(self) -> torch.Tensor: ...
    @property
    def W_out(self) -> torch.Tensor: ...
    @property
    def b_gate(self) -> torch.Tensor | None: ...
    @property
    def b_in(self) -> torch.Tensor | None: ...
    @property
    def b_out(self) -> torch.Tensor | None: ...


def analysis_dtype(weight_dtype: torch.dtype, dtype: torch.dtype | None) -> torch.dtype:
    """The dtype an analysis runs in: the one asked for, else float32 for half/bfloat16 weights, else the weights'."""
    if dtype is not None:
        if not dtype.is_floating_point:
            raise TypeError(f"analysis dtype must be a floating-point dtype, got {dtype}.")
        return dtype
    return torch.float32 if weight_dtype in LOW_PRECISION else weight_dtype


def check_finite(tensor: torch.Tensor, what: str) -> None:
    """Raise ValueError naming `what` if it holds NaN or inf."""
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).sum().item()
        raise ValueError(
            f"{what} holds {bad} NaN/inf value(s); an analysis of non-finite numbers would be meaningless. "
            "Check the checkpoint (or the tensor you passed) for overflow or corrupted values."
        )


def mlp_name(mlp: Any) -> str | None:
    """`blocks.{l}.mlp` for an MLP component of a TransformerBridge (from its hook names), else None."""
    hook = getattr(mlp, "hook_in", None)
    name = getattr(hook, "name", None)
    return name.rsplit(".", 1)[0] if isinstance(name, str) and name.endswith(".hook_in") else None


def _mlp_kind(mlp: Any) -> str:
    config = getattr(mlp, "config", None)
    act = (
        getattr(mlp, "activation_name", None) or getattr(config, "act_fn", None) or getattr(config, "hidden_act", None)
    )
    if isinstance(mlp, TdoomsMLP):  # the tdooms module keeps its activation function, not its name
        act = next((name for name, fn in ACTIVATIONS.items() if fn is mlp.act_fn), None)
    with_act = f" with activation {act!r}" if act else ""
    gated = mlp.bilinear if isinstance(mlp, TdoomsMLP) else hasattr(mlp, "gate") or hasattr(mlp, "gate_proj")
    if gated or "Gate" in type(mlp).__name__:
        return f"a gated MLP{with_act}: out = W_out(act(W_gate x) * (W_in x)), a GLU / SwiGLU"
    if hasattr(mlp, "in") or "MLP" in type(mlp).__name__:
        return f"a plain MLP{with_act}: out = W_out act(W_in x)"
    return f"a {type(mlp).__name__}, not a bilinear MLP"


def not_bilinear(mlp: Any, where: str | None = None) -> NotBilinearError:
    """The error for a weight-space analysis asked of an MLP that is not bilinear: which layer, what it is, what to do."""
    layer = where or mlp_name(mlp) or f"this {type(mlp).__name__}"
    return NotBilinearError(
        f"{layer} is {_mlp_kind(mlp)} ({type(mlp).__name__}). Weight-space analyses (interaction matrices, "
        f"eigendecomposition, B, HOSVD, truncation) need a bilinear MLP, out = W_out((W_gate x) * (W_in x)) with no "
        f"activation (a HookedBilinearMLP, a LlamaMLP with hidden_act 'linear', or a tdooms MLP with gate null); an "
        f"activation leaves no exact interaction matrix. Analyse a bilinear checkpoint (tdooms "
        f"'gate': null, or a Llama with hidden_act \"linear\"), or make a SwiGLU Llama bilinear first with "
        f"hooked_bilinear.bilinearize."
    )


def _is_identity(act_fn: object) -> bool:
    """Whether an activation module/function is the identity (transformers' "linear", tdooms' gate null)."""
    if act_fn is None:
        return False
    return isinstance(act_fn, LinearActivation) or act_fn is ACTIVATIONS[None]


@dataclass(frozen=True)
class BilinearFactors:
    """`out(x) = ((x' W_gate) * (x' W_in)) W_out` with `x' = [x, 1]` when `augmented`, else `x' = x`.

    W_gate, W_in: [d_in, d_hidden]; W_out: [d_hidden, d_out].
    """

    W_gate: Float[torch.Tensor, "d_in d_hidden"]
    W_in: Float[torch.Tensor, "d_in d_hidden"]
    W_out: Float[torch.Tensor, "d_hidden d_out"]
    augmented: bool

    @property
    def d_in(self) -> int:
        return self.W_gate.shape[0]

    @property
    def d_model(self) -> int:
        """Size of the layer's real input (d_in without the appended constant)."""
        return self.d_in - int(self.augmented)

    @property
    def d_hidden(self) -> int:
        return self.W_gate.shape[1]

    @property
    def d_out(self) -> int:
        return self.W_out.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.W_gate.dtype

    @property
    def device(self) -> torch.device:
        return self.W_gate.device

    @classmethod
    def from_mlp(
        cls, mlp: torch.nn.Module, dtype: torch.dtype | None = None, where: str | None = None
    ) -> BilinearFactors:
        """Factors of a bilinear MLP module: this package's `HookedBilinearMLP` (anything with `is_bilinear = True`
        and W_gate/W_in/W_out/biases), a transformers `LlamaMLP` (gate_proj, up_proj, down_proj) with hidden_act
        "linear", or the tdooms MLP module (`hooked_bilinear.modeling.modeling.MLP`) of a bilinear config;
        NotBilinearError naming the layer (`where`, else the MLP's hook names) for any other MLP."""
        if getattr(mlp, "is_bilinear", False):
            layer = cast(BilinearWeights, mlp)
            return cls.from_weights(
                layer.W_gate, layer.W_in, layer.W_out, layer.b_gate, layer.b_in, layer.b_out, dtype=dtype
            )
        if isinstance(mlp, LlamaMLP) and _is_identity(mlp.act_fn):
            gate, up, down = mlp.gate_proj, mlp.up_proj, mlp.down_proj
            return cls.from_weights(
                gate.weight.T, up.weight.T, down.weight.T, gate.bias, up.bias, down.bias, dtype=dtype
            )
        if isinstance(mlp, TdoomsMLP) and mlp.bilinear and _is_identity(mlp.act_fn):
            W_gate, W_in = split_gate_in(mlp.w.weight, dim=0)
            b_gate, b_in = split_gate_in(mlp.w.bias, dim=0) if mlp.w.bias is not None else (None, None)
            down = mlp.down
            return cls.from_weights(W_gate.T, W_in.T, down.weight.T, b_gate, b_in, down.bias, dtype=dtype)
        raise not_bilinear(mlp, where)

    @classmethod
    def from_weights(
        cls,
        W_gate: Float[torch.Tensor, "d_model d_hidden"],
        W_in: Float[torch.Tensor, "d_model d_hidden"],
        W_out: Float[torch.Tensor, "d_hidden d_out"],
        b_gate: Float[torch.Tensor, " d_hidden"] | None = None,
        b_in: Float[torch.Tensor, " d_hidden"] | None = None,
        b_out: Float[torch.Tensor, " d_out"] | None = None,
        dtype: torch.dtype | None = None,
    ) -> BilinearFactors:
        """Fold the biases (any of which may be None) into augmented factors, cast to the analysis dtype."""
        target = analysis_dtype(W_gate.dtype, dtype)
        named = {"W_gate": W_gate, "W_in": W_in, "W_out": W_out, "b_gate": b_gate, "b_in": b_in, "b_out": b_out}
        for name, tensor in named.items():
            if tensor is not None:
                check_finite(tensor, f"the MLP weight {name}")
        W_gate, W_in, W_out = (t.detach().to(target) for t in (W_gate, W_in, W_out))
        if all(b is None for b in (b_gate, b_in, b_out)):
            return cls(W_gate, W_in, W_out, augmented=False)
        d_model, d_hidden = W_gate.shape
        d_out = W_out.shape[1]

        def bias(b: torch.Tensor | None, size: int) -> torch.Tensor:
            return torch.zeros(size, dtype=target, device=W_gate.device) if b is None else b.detach().to(target)

        unit = torch.zeros(d_model + 1, 1, dtype=target, device=W_gate.device)
        unit[-1] = 1.0  # the extra hidden unit reads the constant input on both sides: it carries b_out
        W_gate_aug = torch.cat([torch.cat([W_gate, bias(b_gate, d_hidden)[None]]), unit], dim=1)
        W_in_aug = torch.cat([torch.cat([W_in, bias(b_in, d_hidden)[None]]), unit], dim=1)
        W_out_aug = torch.cat([W_out, bias(b_out, d_out)[None]])
        return cls(W_gate_aug, W_in_aug, W_out_aug, augmented=True)

    def augment(self, x: Float[torch.Tensor, "*batch d_model"]) -> Float[torch.Tensor, "*batch d_in"]:
        """`x' = [x, 1]` for augmented factors, else x; cast to the factors' dtype and device."""
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"input of size {x.shape[-1]} given, but this MLP reads vectors of size d_model={self.d_model} "
                "(its hook_in activations)."
            )
        check_finite(x, "the input x")
        x = x.to(dtype=self.dtype, device=self.device)
        if not self.augmented:
            return x
        return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)

    def directions(self, u: torch.Tensor) -> Float[torch.Tensor, "n d_out"]:
        """Validate output direction(s) u ([d_out] or [n, d_out]) and return them as [n, d_out] in the analysis dtype."""
        if not isinstance(u, torch.Tensor):
            raise TypeError(
                f"directions must be a torch.Tensor of shape [d_out] or [n, d_out], got {type(u).__name__}."
            )
        if u.ndim not in (1, 2) or u.shape[-1] != self.d_out:
            raise ValueError(
                f"direction of shape {tuple(u.shape)} given, but this MLP writes vectors of size "
                f"d_model={self.d_out}: pass a tensor of shape [{self.d_out}] or [n, {self.d_out}]."
            )
        check_finite(u, "the output direction(s) u")
        return u.reshape(-1, self.d_out).to(dtype=self.dtype, device=self.device)

    def hidden_coefficients(self, u: Float[torch.Tensor, "n d_out"]) -> Float[torch.Tensor, "n d_hidden"]:
        """`c_u = W_out u`: how much each hidden unit's product writes along u."""
        return u @ self.W_out.T

    def forward(self, x: Float[torch.Tensor, "*batch d_model"]) -> Float[torch.Tensor, "*batch d_out"]:
        """The layer itself, `((x' W_gate) * (x' W_in)) W_out`, in the analysis dtype."""
        xa = self.augment(x)
        return ((xa @ self.W_gate) * (xa @ self.W_in)) @ self.W_out


Layer = BilinearFactors | torch.nn.Module  # what every analysis takes: factors, or a bridge's blocks[l].mlp


def as_factors(layer: Layer, dtype: torch.dtype | None = None) -> BilinearFactors:
    """The factors an analysis works on: BilinearFactors as given (cast to `dtype`), or those of an MLP module (a bridge's
    `blocks[l].mlp`); NotBilinearError naming the layer for a gated or plain MLP."""
    if isinstance(layer, BilinearFactors):
        target = analysis_dtype(layer.dtype, dtype)
        if target == layer.dtype:
            return layer
        return BilinearFactors(layer.W_gate.to(target), layer.W_in.to(target), layer.W_out.to(target), layer.augmented)
    return BilinearFactors.from_mlp(layer, dtype=dtype)
