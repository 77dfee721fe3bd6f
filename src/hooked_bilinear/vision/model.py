"""The bilinear image classifier as a TransformerLens hooked module.

    pixels x [batch, n_pixels] in [0, 1]
    e = W_E x                                  embed (no bias)           hook: mlp.hook_in
    h = (e W_gate + b_gate) * (e W_in + b_in)  the bilinear layer        hooks: mlp.hook_pre, mlp.hook_pre_linear,
                                                                          mlp.hook_post
    logits = h W_U + b_U                       head (no bias by default) hook: hook_logits

The bilinear layer writes its product straight into the space the head reads (its `W_out` is the identity), so
the logit of class c is `u_c . h + b_U[c]` with u_c = W_U[:, c] (`class_directions()`), and the shared analyses of
`hooked_bilinear.analysis` (through `BilinearAnalysisMethods`) give `logit_c = e'^T Q_{u_c} e' + b_U[c]` with
e' = [e, 1] when the layer has biases.
"""

from __future__ import annotations

from pathlib import Path

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from safetensors.torch import load_file, save_file
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from hooked_bilinear.analysis.methods import BilinearAnalysisMethods
from hooked_bilinear.errors import CheckpointNotFoundError, CheckpointWeightsError
from hooked_bilinear.vision.config import VisionConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class BilinearLayer(BilinearAnalysisMethods, torch.nn.Module):
    """`h = (e W_gate + b_gate) * (e W_in + b_in)`, no activation; hooks hook_in, hook_pre (gate side),
    hook_pre_linear (in side), hook_post (the product, which is the layer's output)."""

    is_bilinear = True

    def __init__(self, d_model: int, d_hidden: int, bias: bool) -> None:
        super().__init__()
        self.gate = torch.nn.Linear(d_model, d_hidden, bias=bias)
        self.in_proj = torch.nn.Linear(d_model, d_hidden, bias=bias)
        self.hook_in = HookPoint()
        self.hook_pre = HookPoint()
        self.hook_pre_linear = HookPoint()
        self.hook_post = HookPoint()

    @property
    def W_gate(self) -> Float[torch.Tensor, "d_model d_hidden"]:
        return self.gate.weight.T

    @property
    def W_in(self) -> Float[torch.Tensor, "d_model d_hidden"]:
        return self.in_proj.weight.T

    @property
    def W_out(self) -> Float[torch.Tensor, "d_hidden d_hidden"]:
        """The identity: the product itself is the output (the head is read through `class_directions`)."""
        weight = self.gate.weight
        return torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)

    @property
    def b_gate(self) -> torch.Tensor | None:
        return self.gate.bias

    @property
    def b_in(self) -> torch.Tensor | None:
        return self.in_proj.bias

    @property
    def b_out(self) -> torch.Tensor | None:
        return None

    def forward(self, e: Float[torch.Tensor, "batch d_model"]) -> Float[torch.Tensor, "batch d_hidden"]:
        e = self.hook_in(e)
        return self.hook_post(self.hook_pre(self.gate(e)) * self.hook_pre_linear(self.in_proj(e)))


class BilinearClassifier(HookedRootModule):
    """pixels -> embed -> bilinear layer (`mlp`) -> head; see the module doc. `config` is a `VisionConfig`."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.hook_pixels = HookPoint()
        self.embed = torch.nn.Linear(config.n_pixels, config.d_model, bias=False)
        self.mlp = BilinearLayer(config.d_model, config.d_hidden, config.bias)
        self.head = torch.nn.Linear(config.d_hidden, config.n_classes, bias=config.head_bias)
        self.hook_logits = HookPoint()
        self.setup()

    @jaxtyped(typechecker=beartype)
    def forward(self, pixels: Float[torch.Tensor, "batch n_pixels"]) -> Float[torch.Tensor, "batch n_classes"]:
        if pixels.shape[-1] != self.config.n_pixels:
            raise ValueError(
                f"pixels of shape {tuple(pixels.shape)} given; this {self.config.dataset} classifier "
                f"reads [batch, {self.config.n_pixels}] (images flattened row by row, values in [0, 1])."
            )
        e = self.embed(self.hook_pixels(pixels.to(self.embed.weight.dtype)))
        return self.hook_logits(self.head(self.mlp(e)))

    @property
    def W_E(self) -> Float[torch.Tensor, "d_model n_pixels"]:
        """The embedding: e = W_E x."""
        return self.embed.weight

    def class_directions(self) -> Float[torch.Tensor, "n_classes d_hidden"]:
        """u_c (rows): `logit_c = u_c . h + b_U[c]` for the bilinear layer's output h."""
        return self.head.weight.detach()

    def class_matrices(self, dtype: torch.dtype | None = torch.float64) -> Float[torch.Tensor, "n_classes d_in d_in"]:
        """Q_c with the head bias folded in: `logit_c = e'^T Q_c e'` exactly, e' = [e, 1] when the layer or the head
        has a bias (a head bias b_c sits at Q_c[-1, -1]), else e' = e."""
        Q = self.mlp.interaction_matrix(self.class_directions(), dtype=dtype)
        if self.head.bias is None:
            return Q
        if not self.mlp.factors().augmented:
            Q = torch.nn.functional.pad(Q, (0, 1, 0, 1))
        Q[:, -1, -1] += self.head.bias.detach().to(Q.dtype)
        return Q

    def augment(self, e: Float[torch.Tensor, "*batch d_model"]) -> Float[torch.Tensor, "*batch d_in"]:
        """e' for `class_matrices`: [e, 1] when the layer or the head has a bias, else e."""
        if self.config.bias or self.config.head_bias:
            return torch.cat([e, torch.ones_like(e[..., :1])], dim=-1)
        return e

    def to_pixels(self, v: Float[torch.Tensor, "*n d_in"]) -> Float[torch.Tensor, "*n n_pixels"]:
        """Vectors in embedding space (eigenvectors) as images: `v . e = (W_E^T v) . x`; a bias entry is dropped."""
        v = v[..., : self.config.d_model]
        return v @ self.W_E.detach().to(v.dtype)

    def save(self, folder: str | Path) -> Path:
        """config.json and model.safetensors in `folder` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder / CONFIG_FILE)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, folder / WEIGHTS_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> BilinearClassifier:
        """A classifier saved by `save`; every weight checked (names, shapes, finite)."""
        folder = Path(folder)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise CheckpointNotFoundError(
                    f"{folder} has no {name}: not a folder written by BilinearClassifier.save (or vision train)."
                )
        model = cls(VisionConfig.load(folder / CONFIG_FILE))
        state = load_file(folder / WEIGHTS_FILE)
        expected = model.state_dict()
        if set(state) != set(expected):
            raise CheckpointWeightsError(
                f"{folder / WEIGHTS_FILE}: weights {sorted(state)} do not match the config's {sorted(expected)}."
            )
        for name, tensor in state.items():
            if tensor.shape != expected[name].shape:
                raise CheckpointWeightsError(
                    f"{name} has shape {tuple(tensor.shape)}, the config needs {tuple(expected[name].shape)}."
                )
            if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
                raise CheckpointWeightsError(f"{name} is not a finite floating-point tensor.")
        model.load_state_dict(state)
        return model.eval()
