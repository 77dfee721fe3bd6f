"""Independent re-implementation of the tdooms checkpoint formats, written from docs/formats.md alone.

Nothing here imports hooked_bilinear: the package is checked against this, not against itself.
`write_checkpoint` writes random weights (std 0.2, so a wrong norm, scale, rotary convention or gate shows) in the
exact on-disk format; `reference_logits` computes the forward pass straight from that state dict.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

EMBEDDED = "ts-synthetic-2l"  # the checkpoint the package ships

GATES = {
    None: lambda x: x,
    False: lambda x: x,
    True: torch.relu,
    "relu": torch.relu,
    "silu": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
}


def make_config(
    fmt: str = "current",
    *,
    n_layer: int = 2,
    n_head: int = 4,
    d_model: int = 32,
    d_hidden: int = 48,
    n_ctx: int = 64,
    vocab: int = 50,
    bilinear: bool = True,
    gate: Any = None,
    bias: bool = False,
    normalization: bool = True,
) -> dict[str, Any]:
    """config.json dict as the tdooms code dumps it (no usable model_type)."""
    config: dict[str, Any] = dict(
        n_layer=n_layer,
        n_head=n_head,
        d_model=d_model,
        d_hidden=d_hidden,
        n_ctx=n_ctx,
        bilinear=bilinear,
        gate=gate,
        normalization=normalization,
    )
    if fmt == "current":
        config.update(bias=bias, tokenizer=None, repo="test/random", model_type="", architectures=["Transformer"])
    else:
        config.update(n_vocab=vocab, noise=None, modifier=None, architectures=["Transformer"])
    return config


def random_state(config: dict[str, Any], vocab: int, std: float = 0.15, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random state dict with the exact keys and shapes of docs/formats.md for `config`."""
    g = torch.Generator().manual_seed(seed)
    legacy = "n_vocab" in config
    d, h, n_head = config["d_model"], config["d_hidden"], config["n_head"]
    bias = bool(config.get("bias", False))

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    def linear(name: str, out_dim: int, in_dim: int, has_bias: bool = False) -> None:
        state[f"{name}.weight"] = rnd(out_dim, in_dim)
        if has_bias:
            state[f"{name}.bias"] = rnd(out_dim)

    def norm(name: str) -> None:
        if legacy and config["normalization"]:
            state[f"{name}.norm.weight"] = 1.0 + rnd(d)
            state[f"{name}.norm.bias"] = rnd(d)

    # Without normalization the residual stream is not rescaled: a unit-std embedding would make float32 logits
    # of ~400 whose rounding alone exceeds 1e-5, so the embedding shares the weights' std there.
    wte_std = 1.0 if config["normalization"] else std
    state: dict[str, torch.Tensor] = {"transformer.wte.weight": torch.randn(vocab, d, generator=g) * wte_std}
    d_head = d // n_head
    for i in range(config["n_layer"]):
        p = f"transformer.h.{i}"
        norm(f"{p}.n1")
        norm(f"{p}.n2")
        linear(f"{p}.attn.qkv", 3 * d, d)
        linear(f"{p}.attn.o", d, d)
        state[f"{p}.attn.rotary.inv_freq"] = 1.0 / 10000 ** (torch.arange(0, d_head, 2).float() / d_head)
        # `bias` is the MLP's only (docs/formats.md): the authors' attention and lm_head never have one.
        linear(f"{p}.mlp.w", 2 * h if config["bilinear"] else h, d, bias)
        linear(f"{p}.mlp.{'o' if legacy else 'p'}", d, h, bias)
    norm("transformer.n_f")
    state["lm_head.weight"] = rnd(vocab, d)
    return state


def write_checkpoint(
    folder: Path, config: dict[str, Any], vocab: int = 50, seed: int = 0, weights: str = "safetensors"
) -> dict[str, torch.Tensor]:
    """Write config.json + model.safetensors (or pytorch_model.bin); return the state dict."""
    folder.mkdir(parents=True, exist_ok=True)
    state = random_state(config, vocab, seed=seed)
    (folder / "config.json").write_text(json.dumps(config))
    if weights == "safetensors":
        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return state


def reference_logits(
    state: dict[str, torch.Tensor], config: dict[str, Any], tokens: torch.Tensor, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """docs/formats.md forward pass: tokens [batch, pos] -> logits [batch, pos, vocab]."""
    legacy = "n_vocab" in config
    sd = {k: v.to(dtype) for k, v in state.items()}
    n_layer, n_head, d = config["n_layer"], config["n_head"], config["d_model"]
    d_head = d // n_head
    gate = GATES[config["gate"]]
    s = 1.0 if legacy else 1.0 / math.sqrt(2 * n_layer)

    def lin(x: torch.Tensor, name: str) -> torch.Tensor:
        y = x @ sd[f"{name}.weight"].T
        return y + sd[f"{name}.bias"] if f"{name}.bias" in sd else y

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        if not config["normalization"]:
            return x
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-8)
        if legacy:
            y = y * sd[f"{name}.norm.weight"] + sd[f"{name}.norm.bias"]
        return y

    batch, pos = tokens.shape
    angles = (
        torch.arange(pos, dtype=torch.float64)[:, None]
        * (1.0 / 10000 ** (torch.arange(0, d_head, 2).double() / d_head))[None, :]
    )
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(dtype), torch.cat([angles.sin()] * 2, -1).to(dtype)

    def rope(t: torch.Tensor) -> torch.Tensor:  # t [batch, head, pos, d_head]
        half = d_head // 2
        rotated = torch.cat([-t[..., half:], t[..., :half]], -1)
        return t * cos + rotated * sin

    causal = torch.ones(pos, pos, dtype=torch.bool).tril()
    x = sd["transformer.wte.weight"][tokens]
    for i in range(n_layer):
        p = f"transformer.h.{i}"
        q, k, v = lin(norm(x, f"{p}.n1"), f"{p}.attn.qkv").view(batch, pos, 3, n_head, d_head).permute(2, 0, 3, 1, 4)
        scores = rope(q) @ rope(k).transpose(-1, -2) / math.sqrt(d_head)
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        z = (pattern @ v).transpose(1, 2).reshape(batch, pos, d)
        x = x + s * lin(z, f"{p}.attn.o")
        hidden = lin(norm(x, f"{p}.n2"), f"{p}.mlp.w")
        down = f"{p}.mlp.{'o' if legacy else 'p'}"
        if config["bilinear"]:
            left, right = hidden.chunk(2, -1)
            x = x + lin(gate(left) * right, down)
        else:
            x = x + lin(gate(hidden), down)
    return lin(norm(x, "transformer.n_f"), "lm_head").float()


def variants() -> list[tuple[str, dict[str, Any]]]:
    """Every format variant of the core issue: (id, config)."""
    out = [
        ("current-bilinear", make_config("current")),
        ("current-bilinear-bias", make_config("current", bias=True)),
        ("current-bilinear-nonorm", make_config("current", normalization=False)),
        ("current-bilinear-bias-nonorm", make_config("current", bias=True, normalization=False)),
        ("current-glu-relu", make_config("current", gate="relu")),
        ("current-glu-silu", make_config("current", gate="silu", bias=True)),
        ("current-glu-gelu", make_config("current", gate="gelu")),
        ("current-mlp", make_config("current", bilinear=False, gate="relu")),
        ("current-mlp-linear-bias", make_config("current", bilinear=False, gate=None, bias=True)),
        ("legacy-bilinear", make_config("legacy")),
        ("legacy-glu-relu", make_config("legacy", gate=True)),
        ("legacy-bilinear-nonorm", make_config("legacy", normalization=False)),
        ("legacy-mlp", make_config("legacy", bilinear=False, gate=True)),
    ]
    return out
