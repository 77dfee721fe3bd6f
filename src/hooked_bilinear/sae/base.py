"""The sparse autoencoder every architecture shares: SAELens's orientation, parameters and encode/decode structure.

    pre(x) = (x - b_dec * apply_b_dec_to_input) W_enc + b_enc      W_enc [d_in, d_sae], b_enc [d_sae]
    f      = activation(pre(x))                                     (per architecture: topk.py, relu.py, jumprelu.py)
    x_hat  = f W_dec + b_dec                                        W_dec [d_sae, d_in], b_dec [d_in]

Rows of W_dec are the feature directions (decoder vectors) in activation space; columns of W_enc the encoder
directions. `metadata` holds what SAELens keeps there (hook_name, model_name, ...); `hook_name` is the bridge hook
whose activations the SAE reads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from torch import nn

from hooked_bilinear.errors import SAEError


class SAE(nn.Module, ABC):
    """A sparse autoencoder with SAELens's parameters `W_enc`, `b_enc`, `W_dec`, `b_dec` (see module doc)."""

    architecture: ClassVar[str]

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        apply_b_dec_to_input: bool = True,
        metadata: dict[str, Any] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if d_in < 1 or d_sae < 1:
            raise SAEError(f"d_in and d_sae must be positive, got d_in={d_in}, d_sae={d_sae}.")
        self.d_in, self.d_sae = d_in, d_sae
        self.apply_b_dec_to_input = apply_b_dec_to_input
        self.metadata: dict[str, Any] = dict(metadata or {})
        factory: dict[str, Any] = {"dtype": dtype, "device": device}
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae, **factory))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, **factory))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in, **factory))
        self.b_dec = nn.Parameter(torch.zeros(d_in, **factory))
        self.add_parameters()

    def add_parameters(self) -> None:
        """Parameters an architecture adds to W_enc, b_enc, W_dec, b_dec (JumpReLU's threshold); none by default."""

    @property
    def hook_name(self) -> str | None:
        """The bridge hook whose activations this SAE encodes (metadata["hook_name"]), if known."""
        return self.metadata.get("hook_name")

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def check_input(self, x: torch.Tensor) -> None:
        """SAEError unless x's last axis is d_in (naming the hook, so a wrong SAE for a hook is caught early)."""
        if x.shape[-1] != self.d_in:
            where = f" (hook {self.hook_name})" if self.hook_name else ""
            raise SAEError(
                f"this SAE{where} reads vectors of size d_in={self.d_in}, but got activations of size "
                f"{x.shape[-1]}: it was trained on a different hook or model; pick the SAE of this hook."
            )

    def pre_activations(self, x: Float[torch.Tensor, "*batch d_in"]) -> Float[torch.Tensor, "*batch d_sae"]:
        """`(x - b_dec) W_enc + b_enc` (without `- b_dec` when apply_b_dec_to_input is false)."""
        self.check_input(x)
        x = x.to(self.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    @abstractmethod
    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """The architecture's sparsifying nonlinearity on the pre-activations."""

    @jaxtyped(typechecker=beartype)
    def encode(self, x: Float[torch.Tensor, "*batch d_x"]) -> Float[torch.Tensor, "*batch d_sae"]:
        """Feature activations f [*batch, d_sae] of activations x [*batch, d_in]."""
        return self.activation(self.pre_activations(x))

    @jaxtyped(typechecker=beartype)
    def decode(self, f: Float[torch.Tensor, "*batch d_f"]) -> Float[torch.Tensor, "*batch d_in"]:
        """The reconstruction `f W_dec + b_dec` [*batch, d_in] of feature activations f [*batch, d_sae]."""
        if f.shape[-1] != self.d_sae:
            raise SAEError(
                f"feature activations of size {f.shape[-1]} given; this SAE has d_sae={self.d_sae} features."
            )
        return f.to(self.dtype) @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of x."""
        return self.decode(self.encode(x))

    def check_feature(self, feature: int) -> int:
        """IndexError naming the valid range unless 0 <= feature < d_sae."""
        if not 0 <= int(feature) < self.d_sae:
            raise IndexError(f"feature {feature} does not exist: this SAE has features 0..{self.d_sae - 1}.")
        return int(feature)

    def architecture_cfg(self) -> dict[str, Any]:
        """The architecture's own cfg.json keys (e.g. TopK's k)."""
        return {}

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_sae={self.d_sae}, hook_name={self.hook_name!r}"
