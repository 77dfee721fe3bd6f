"""TransformerLens 4 architecture adapter for `BilinearForCausalLM` (the tdooms formats).

Maps the model's modules to TransformerLens's canonical names:

    embed       transformer.wte             blocks.{i}.ln1   transformer.h.{i}.n1.norm
    rotary_emb  transformer.rotary_emb      blocks.{i}.attn  transformer.h.{i}.attn   (fused qkv split into q, k, v)
    unembed     lm_head                     blocks.{i}.ln2   transformer.h.{i}.n2.norm
    ln_final    transformer.n_f.norm        blocks.{i}.mlp   transformer.h.{i}.mlp    (HookedBilinearMLP if bilinear)

The current format scales the attention output by `s = 1/sqrt(2 n_layer)` inside the block; the block bridge exposes
`hook_attn_out` as the scaled contribution, as TransformerLens does for Granite's residual multiplier.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.factories.architecture_adapter_factory import (
    SUPPORTED_ARCHITECTURES,
    ArchitectureAdapterFactory,
)
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge.architecture_adapter import ArchitectureAdapter
from transformer_lens.model_bridge.generalized_components import (
    BlockBridge,
    EmbeddingBridge,
    LinearBridge,
    RMSNormalizationBridge,
    RotaryEmbeddingBridge,
    ScaledResidualBlockBridge,
    UnembeddingBridge,
)
from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

from hooked_bilinear.components.fused_hooked_bilinear_mlp import FusedHookedBilinearMLP
from hooked_bilinear.components.not_bilinear_mlp import JointGateUpNotBilinearMLP, PlainNotBilinearMLP
from hooked_bilinear.components.rotary_hooked_attention import RotaryHookedAttentionBridge
from hooked_bilinear.loading.llama import BILINEAR_LLAMA_ARCHITECTURE, BilinearLlamaArchitectureAdapter
from hooked_bilinear.modeling.configuration import BilinearConfig

ARCHITECTURE = "BilinearForCausalLM"


def split_linear(linear: nn.Linear, n: int) -> tuple[nn.Linear, ...]:
    """Split a fused Linear [n * k, d] into n Linears [k, d] along its output rows (views, no copy).

    For the fused qkv: TransformerLens's default qkv splitter assumes GPT-2's transposed Conv1D layout.
    """
    weights = torch.tensor_split(linear.weight, n, dim=0)
    biases = torch.tensor_split(linear.bias, n, dim=0) if linear.bias is not None else (None,) * n
    parts = []
    for weight, bias in zip(weights, biases):
        part = nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=bias is not None)
        part.weight = nn.Parameter(weight, requires_grad=linear.weight.requires_grad)
        if bias is not None:
            part.bias = nn.Parameter(bias, requires_grad=linear.weight.requires_grad)
        parts.append(part)
    return tuple(parts)


class ResidualMidBlockBridge(BlockBridge):
    """Block whose `hook_resid_mid` is the residual itself, as in HookedTransformer: what a hook returns there is
    both the MLP's input and the residual the MLP output is added to.

    TransformerLens's `BlockBridge` aliases `hook_resid_mid` to `ln2.hook_in`, so a patch there reaches the MLP but
    not the residual sum (the block's own forward keeps its local variable). `BilinearForCausalLM`'s blocks pass
    the mid residual through a parameterless `resid_mid` module; this bridge hooks its output.
    """

    def __init__(self, name: str, submodules: dict[str, GeneralizedComponent], **kwargs: Any) -> None:
        super().__init__(name, submodules=submodules, **kwargs)
        self.hook_aliases = {key: value for key, value in self.hook_aliases.items() if key != "hook_resid_mid"}
        self.hook_resid_mid = HookPoint()
        self._resid_mid_handle: RemovableHandle | None = None

    def set_original_component(self, original_component: nn.Module) -> None:
        """Wrap the block and route its `resid_mid` module's output through `hook_resid_mid`."""
        super().set_original_component(original_component)
        if self._resid_mid_handle is not None:
            self._resid_mid_handle.remove()  # wrapped again: one hook, never two
        hook = self.hook_resid_mid
        resid_mid = original_component.get_submodule("resid_mid")
        self._resid_mid_handle = resid_mid.register_forward_hook(lambda _module, _args, output: hook(output))


class AttentionScaledBlockBridge(ResidualMidBlockBridge, ScaledResidualBlockBridge):
    """Block computing `x + s * attn(n1(x))` then `x + mlp(n2(x))`: only attention is scaled."""

    def __init__(self, name: str, submodules: dict[str, GeneralizedComponent], scale: float) -> None:
        super().__init__(
            name,
            submodules=submodules,
            residual_contribution_scale=scale,
            scaled_attn_submodule="attn",
            scaled_mlp_submodule=None,
        )
        self.hook_aliases["hook_mlp_out"] = "mlp.hook_out"


def bridge_config(config: BilinearConfig, dtype: torch.dtype, model_name: str) -> TransformerBridgeConfig:
    """The TransformerBridgeConfig of a BilinearConfig (sizes, eps, activation name, rotary), carrying the
    BilinearConfig itself as `cfg.checkpoint_config` for the adapter to read."""
    cfg = TransformerBridgeConfig(
        d_model=config.d_model,
        d_head=config.d_head,
        n_layers=config.n_layer,
        n_ctx=config.n_ctx,
        n_heads=config.n_head,
        d_vocab=config.vocab_size,
        d_vocab_out=config.vocab_size,
        d_mlp=config.d_hidden,
        eps=config.rms_norm_eps,
        act_fn=config.hidden_act,
        rotary_base=config.rope_theta,
        rotary_dim=config.d_head,
        architecture=ARCHITECTURE,
        model_name=model_name,
        dtype=dtype,
        original_architecture=ARCHITECTURE,
    )
    cfg.checkpoint_config = config
    return cfg


class BilinearArchitectureAdapter(ArchitectureAdapter):
    """Adapter for BilinearForCausalLM; reads the checkpoint's BilinearConfig (`cfg.checkpoint_config`)."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.cfg.default_prepend_bos = True
        checkpoint_config = getattr(cfg, "checkpoint_config", None)
        # TransformerBridge.boot_transformers builds a generic config first and passes the BilinearConfig only to
        # prepare_loading, which rebuilds the mapping; until then the defaults describe a current bilinear model.
        self._build(checkpoint_config if isinstance(checkpoint_config, BilinearConfig) else BilinearConfig())

    def prepare_loading(self, model_name: str, model_kwargs: dict[str, Any]) -> None:
        super().prepare_loading(model_name, model_kwargs)
        config = model_kwargs.get("config")
        if isinstance(config, BilinearConfig):
            tl_config = bridge_config(config, self.cfg.dtype, model_name)
            for key in ("d_head", "n_ctx", "d_mlp", "eps", "act_fn", "rotary_base", "rotary_dim", "checkpoint_config"):
                setattr(self.cfg, key, getattr(tl_config, key))
            self._build(config)

    def _build(self, config: BilinearConfig) -> None:
        self._set_rms_rotary_defaults(gated=config.bilinear)
        # Legacy norms carry a bias, which TransformerLens's RMS fold would drop: they are not folded. Current-format
        # norms are weightless, so folding them changes nothing.
        self.supports_fold_ln = not config.norm_has_params
        self.weight_processing_conversions = {
            **self._qkvo_weight_conversions(include_biases=False)  # attention never has a bias (docs/formats.md)
        }
        blocks_submodules: dict[str, GeneralizedComponent] = {
            "ln1": RMSNormalizationBridge(name="n1.norm", config=self.cfg),
            "attn": RotaryHookedAttentionBridge(
                name="attn",
                config=self.cfg,
                split_qkv_matrix=lambda attn: split_linear(attn.qkv, 3),
                submodules={"qkv": LinearBridge(name="qkv"), "o": LinearBridge(name="o")},
            ),
            "ln2": RMSNormalizationBridge(name="n2.norm", config=self.cfg),
            "mlp": self._mlp_bridge(config),
        }
        scale = config.attn_residual_scale
        blocks: BlockBridge = (
            ResidualMidBlockBridge(name="transformer.h", submodules=blocks_submodules)
            if scale == 1.0
            else AttentionScaledBlockBridge("transformer.h", blocks_submodules, scale)
        )
        self.component_mapping = {
            "embed": EmbeddingBridge(name="transformer.wte"),
            "rotary_emb": RotaryEmbeddingBridge(name="transformer.rotary_emb"),
            "blocks": blocks,
            "ln_final": RMSNormalizationBridge(name="transformer.n_f.norm", config=self.cfg),
            "unembed": UnembeddingBridge(name="lm_head", config=self.cfg),
        }

    def _mlp_bridge(self, config: BilinearConfig) -> GeneralizedComponent:
        down = LinearBridge(name=config.mlp_down_name)
        if not config.bilinear:
            return PlainNotBilinearMLP(
                name="mlp", submodules={"in": LinearBridge(name="w"), "out": down}, activation_name=config.gate
            )
        # TransformerLens's fused splitter takes the first half of `w` as the gate: split_gate_in's order.
        if config.gate is None:
            return FusedHookedBilinearMLP(name="mlp", config=self.cfg, submodules={"out": down}, fused_attr="w")
        return JointGateUpNotBilinearMLP(name="mlp", config=self.cfg, submodules={"out": down}, fused_attr="w")

    def setup_component_testing(self, hf_model: Any, bridge_model: Any | None = None) -> None:
        """Give each attention bridge the model's rotary module (TransformerLens's component tests need it)."""
        rotary = hf_model.transformer.rotary_emb
        for block in hf_model.transformer.h:
            if hasattr(block.attn, "set_rotary_emb"):
                block.attn.set_rotary_emb(rotary)
        if bridge_model is not None:
            for block in bridge_model.blocks:
                block.attn.set_rotary_emb(rotary)


def register_adapter() -> None:
    """Make `BilinearForCausalLM` and this package's Llama adapter known to TransformerLens's adapter factory (idempotent).

    Entry points are discovered first, so the factory does not later mistake this package's own entry point
    (pyproject.toml, group `transformer_lens.architectures`) for an override.
    """
    ArchitectureAdapterFactory.discover_entry_points()
    ArchitectureAdapterFactory.register_adapter(ARCHITECTURE, BilinearArchitectureAdapter)
    # TransformerBridge.boot_transformers looks architectures up in this static table, not in the factory's registry.
    SUPPORTED_ARCHITECTURES[ARCHITECTURE] = BilinearArchitectureAdapter
    ArchitectureAdapterFactory.register_adapter(BILINEAR_LLAMA_ARCHITECTURE, BilinearLlamaArchitectureAdapter)
