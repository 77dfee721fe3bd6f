"""`BilinearForCausalLM`: a faithful transformers model of the tdooms checkpoint formats (docs/formats.md sections 1-2).

Module names equal the checkpoint's state-dict keys, so a tdooms file loads as it is:

    transformer.wte                      token embedding [V, d]
    transformer.rotary_emb               (cos, sin) for the positions (not in the checkpoint)
    transformer.h.{i}.n1.norm            RMSNorm before attention (weightless, with weight+bias, or Identity)
    transformer.h.{i}.attn.qkv / .o      fused Q,K,V [3d, d] (rows: all Q heads, all K, all V) / output
    transformer.h.{i}.attn.rotary        holds the checkpoint's persistent `inv_freq` buffer
    transformer.h.{i}.n2.norm            RMSNorm before the MLP
    transformer.h.{i}.mlp.w / .p (.o)    fused MLP input [2 d_hidden, d] (LEFT rows, then RIGHT) / down projection
    transformer.n_f.norm                 final norm
    lm_head                              unembedding [V, d], untied

Block: `x = x + s * attn(n1(x)); x = x + mlp(n2(x))`, with `s = 1/sqrt(2 n_layer)` (current) or 1 (legacy).
MLP: `p(gate(left) * right)` with `left, right = chunk(w(x), 2)` and gate the identity for a bilinear layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from hooked_bilinear.modeling.configuration import MODEL_TYPE, BilinearConfig, config_from_dict, split_gate_in
from hooked_bilinear.modeling.files import read_config, read_weights, vocab_size_of

# transformers 5.24 renamed the output's `past_key_values` to `cache`; generate reads the field of its version.
CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"

ACTIVATIONS: dict[str | None, Callable[[torch.Tensor], torch.Tensor]] = {
    None: lambda x: x,
    "relu": F.relu,
    "silu": F.silu,
    "gelu": F.gelu,
}


def rotary_inv_freq(d_head: int, base: float = 10000.0) -> torch.Tensor:
    """`1 / base^(arange(0, d_head, 2) / d_head)`, shape [d_head / 2]."""
    return 1.0 / base ** (torch.arange(0, d_head, 2, dtype=torch.int64).float() / d_head)


class RMSNorm(nn.Module):
    """`x * rsqrt(mean(x^2) + eps)`, then `* weight + bias` when affine (legacy format).

    A weightless norm keeps a non-persistent `weight` of ones (never in the state dict) so that
    TransformerLens code reading `.weight` sees the identity scale.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, d_model: int, eps: float, affine: bool) -> None:
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(d_model))
            self.bias = nn.Parameter(torch.zeros(d_model))
        else:
            self.register_buffer("weight", torch.ones(d_model), persistent=False)
            self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.bias is not None:  # affine
            x = x * self.weight + self.bias
        return x


class Norm(nn.Module):
    """Container matching the checkpoint's `n1.norm.*` key layout; `.norm` is RMSNorm or Identity."""

    def __init__(self, config: BilinearConfig) -> None:
        super().__init__()
        self.norm: nn.Module = (
            RMSNorm(config.d_model, config.rms_norm_eps, affine=config.norm_has_params)
            if config.normalization
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class Rotary(nn.Module):
    """Holds the checkpoint's persistent `inv_freq` [d_head / 2]."""

    inv_freq: torch.Tensor

    def __init__(self, config: BilinearConfig) -> None:
        super().__init__()
        self.register_buffer("inv_freq", rotary_inv_freq(config.d_head, config.rope_theta), persistent=True)


class RotaryEmbedding(nn.Module):
    """`(cos, sin)` of shape [batch, pos, d_head] for the rotate-half (GPT-NeoX / Llama) convention."""

    inv_freq: torch.Tensor

    def __init__(self, config: BilinearConfig) -> None:
        super().__init__()
        self.register_buffer("inv_freq", rotary_inv_freq(config.d_head, config.rope_theta), persistent=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :].float().to(x.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    """Causal softmax attention, fused qkv, rotary on the full head, scores / sqrt(d_head)."""

    def __init__(self, config: BilinearConfig, layer_idx: int) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.d_head = config.d_head
        self.layer_idx = layer_idx
        # `bias` is the MLP's only: the authors' attention never has one.
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.o = nn.Linear(config.d_model, config.d_model, bias=False)
        self.rotary = Rotary(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, pos, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, pos, 3, self.n_head, self.d_head)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(dim=2))  # each [batch, head, pos, d_head]
        cos, sin = (t.unsqueeze(1) for t in position_embeddings)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (self.d_head**-0.5)
        if attention_mask is not None:
            scores = scores + attention_mask
        pattern = F.softmax(scores, dim=-1)
        z = torch.matmul(pattern, v).transpose(1, 2).reshape(batch, pos, -1)
        return self.o(z), pattern


class MLP(nn.Module):
    """Bilinear / GLU: `p(gate(left) * right)` with `left, right = chunk(w(x), 2)`. Plain: `p(gate(w(x)))`."""

    def __init__(self, config: BilinearConfig) -> None:
        super().__init__()
        self.bilinear = config.bilinear
        self.act_fn = ACTIVATIONS[config.gate]
        width = 2 * config.d_hidden if config.bilinear else config.d_hidden
        self.w = nn.Linear(config.d_model, width, bias=config.bias)
        self.down_name = config.mlp_down_name
        self.add_module(self.down_name, nn.Linear(config.d_hidden, config.d_model, bias=config.bias))

    @property
    def down(self) -> nn.Linear:
        """The down projection, under its format's name (`p` current, `o` legacy)."""
        return getattr(self, self.down_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down = self.down
        if not self.bilinear:
            return down(self.act_fn(self.w(x)))
        left, right = split_gate_in(self.w(x), dim=-1)
        return down(self.act_fn(left) * right)


class Block(nn.Module):
    def __init__(self, config: BilinearConfig, layer_idx: int) -> None:
        super().__init__()
        self.scale = config.attn_residual_scale
        self.n1 = Norm(config)
        self.attn = Attention(config, layer_idx)
        self.n2 = Norm(config)
        self.mlp = MLP(config)
        # The residual between attention and MLP as a module output (no parameters), so TransformerLens's
        # hook_resid_mid can replace it on both paths, the MLP's input and the residual sum.
        self.resid_mid = nn.Identity()

    def forward(self, hidden_states: torch.Tensor, **attn_kwargs: Any) -> torch.Tensor:
        """`x + s * attn(n1(x))`, then `+ mlp(n2(.))`; attn_kwargs: position_embeddings, attention_mask, cache."""
        attn_out, _ = self.attn(self.n1(hidden_states), **attn_kwargs)
        hidden_states = self.resid_mid(hidden_states + (attn_out if self.scale == 1.0 else self.scale * attn_out))
        return hidden_states + self.mlp(self.n2(hidden_states))


class Transformer(nn.Module):
    def __init__(self, config: BilinearConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.rotary_emb = RotaryEmbedding(config)
        self.h = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.n_f = Norm(config)

    @property
    def blocks(self) -> list[Block]:
        """The decoder blocks `h`, as Blocks (indexing the ModuleList gives a plain Module to a type checker)."""
        return [block for block in self.h if isinstance(block, Block)]


def causal_mask(
    attention_mask: torch.Tensor | None, q_len: int, kv_len: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive mask [batch or 1, 1, q_len, kv_len]: 0 where visible, dtype-min where masked.

    Query i (the last q_len of kv_len positions) sees keys 0..kv_len-q_len+i that the 2-D padding mask keeps.
    """
    visible = torch.ones(q_len, kv_len, dtype=torch.bool, device=device).tril(diagonal=kv_len - q_len)[None, None]
    if attention_mask is not None:
        visible = visible & attention_mask[:, None, None, -kv_len:].to(device=device, dtype=torch.bool)
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(visible, zero, torch.finfo(dtype).min)


class BilinearPreTrainedModel(PreTrainedModel):
    config_class = BilinearConfig
    config: BilinearConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["Block"]
    _supports_cache_class = True

    def _init_weights(self, module: nn.Module) -> None:
        """Default init used when training from scratch (loading overwrites every persistent tensor)."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, (Rotary, RotaryEmbedding)):
            module.inv_freq.copy_(rotary_inv_freq(self.config.d_head, self.config.rope_theta))
        elif isinstance(module, RMSNorm):
            module.weight.data.fill_(1.0)
            if module.bias is not None:
                module.bias.data.zero_()


class BilinearForCausalLM(BilinearPreTrainedModel, GenerationMixin):
    """The tdooms bilinear transformer with its untied language-model head."""

    def __init__(self, config: BilinearConfig) -> None:
        super().__init__(config)
        self.transformer = Transformer(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args: Any, **kwargs: Any
    ) -> BilinearForCausalLM:
        """transformers' `from_pretrained`; a folder dumped by the authors' code (empty `model_type`, no
        `vocab_size`) gets its config from config.json (either format, docs/formats.md) and the embedding's rows."""
        folder = Path(pretrained_model_name_or_path) if pretrained_model_name_or_path is not None else None
        if kwargs.get("config") is None and folder is not None and (folder / "config.json").is_file():
            raw = read_config(folder)
            if raw.get("model_type") != MODEL_TYPE:
                kwargs["config"] = config_from_dict(raw, vocab_size_of(read_weights(folder)))
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Module) -> None:
        if not isinstance(value, nn.Embedding):
            raise TypeError(f"the input embeddings must be an nn.Embedding, got {type(value).__name__}.")
        self.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """The KV cache comes as `cache` (transformers >= 5.24) or `past_key_values` (earlier); either works."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if cache is not None and past_key_values is not None:
            raise ValueError("Pass the KV cache once, as `cache` or as `past_key_values`, not both.")
        past_key_values = cache if cache is not None else past_key_values
        hidden = self.transformer.wte(input_ids) if inputs_embeds is None else inputs_embeds
        batch, q_len = hidden.shape[:2]
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        positions = (
            torch.arange(past, past + q_len, device=hidden.device)[None].expand(batch, -1)
            if position_ids is None
            else position_ids
        )
        mask = causal_mask(attention_mask, q_len, past + q_len, hidden.dtype, hidden.device)
        position_embeddings = self.transformer.rotary_emb(hidden, positions)
        for block in self.transformer.h:
            hidden = block(
                hidden,
                position_embeddings=position_embeddings,
                attention_mask=mask,
                past_key_values=past_key_values,
            )
        logits = self.lm_head(self.transformer.n_f(hidden))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten())
        output = CausalLMOutputWithPast(loss=loss, logits=logits)
        if past_key_values is not None:
            output[CACHE_FIELD] = past_key_values
        return output
