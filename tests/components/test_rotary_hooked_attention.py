"""tdooms bridges cache every hook the Llama bridge caches, the rotated queries and keys among them, and
`hook_rot_q` / `hook_rot_k` hold q and k rotated as docs/formats.md defines (rotate-half convention)."""

from __future__ import annotations

import re

import pytest
import torch

import hooked_bilinear as hb
from tests.llama import write_llama
from tests.reference import EMBEDDED


def hook_names(cache) -> set[str]:
    return {re.sub(r"blocks\.\d+\.", "blocks.L.", name) for name in cache.keys()}


@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
def test_tdooms_bridge_caches_every_hook_of_the_llama_bridge(tmp_path, compatibility_mode):
    folder, _ = write_llama(tmp_path)
    tdooms = hb.from_pretrained(EMBEDDED, compatibility_mode=compatibility_mode)
    llama = hb.from_pretrained(folder, tokenizer=tdooms.tokenizer, compatibility_mode=compatibility_mode)
    tokens = tdooms.to_tokens("once upon a time")
    _, tdooms_cache = tdooms.run_with_cache(tokens)
    _, llama_cache = llama.run_with_cache(tokens)
    assert hook_names(llama_cache) <= hook_names(tdooms_cache)
    assert {"blocks.L.attn.hook_rot_q", "blocks.L.attn.hook_rot_k"} <= hook_names(tdooms_cache)


def test_rotated_queries_and_keys_are_the_rotary_embedding_of_q_and_k():
    bridge = hb.from_pretrained(EMBEDDED)
    tokens = bridge.to_tokens("lily and tom went to the park")
    _, cache = bridge.run_with_cache(tokens)
    d_head = bridge.cfg.d_head
    positions = torch.arange(tokens.shape[1], dtype=torch.float64)
    angles = positions[:, None] * (1.0 / 10000 ** (torch.arange(0, d_head, 2).double() / d_head))[None]
    cos, sin = (torch.cat([f(angles)] * 2, -1)[None, :, None, :] for f in (torch.cos, torch.sin))
    for layer in range(bridge.cfg.n_layers):
        for name in ("q", "k"):
            x = cache[f"blocks.{layer}.attn.hook_{name}"].double()  # [batch, pos, head, d_head]
            rotated = x * cos + torch.cat([-x[..., d_head // 2 :], x[..., : d_head // 2]], -1) * sin
            assert (cache[f"blocks.{layer}.attn.hook_rot_{name}"].double() - rotated).abs().max() <= 1e-5


def test_interventions_on_the_rotary_hooks_change_the_scores_as_they_should():
    """hook_rot_q's and hook_rot_k's return values are what the scores use: doubling the rotated queries doubles every
    unmasked score; zero rotated keys make every score 0 (uniform attention over the causal prefix)."""
    bridge = hb.from_pretrained(EMBEDDED)
    tokens = bridge.to_tokens("lily and tom went to the park")
    n = tokens.shape[1]
    _, clean = bridge.run_with_cache(tokens)
    causal = torch.tril(torch.ones(n, n, dtype=torch.bool))

    def run(name: str, fn):
        with bridge.hooks(fwd_hooks=[(name, fn)]):
            return bridge.run_with_cache(tokens)[1]

    for layer in range(bridge.cfg.n_layers):
        name = f"blocks.{layer}.attn."
        doubled = run(name + "hook_rot_q", lambda x, hook: 2 * x)
        scores, before = doubled[name + "hook_attn_scores"], clean[name + "hook_attn_scores"]
        torch.testing.assert_close(scores[..., causal], 2 * before[..., causal], rtol=1e-5, atol=1e-5)
        flat = run(name + "hook_rot_k", lambda x, hook: torch.zeros_like(x))
        uniform = causal / causal.sum(-1, keepdim=True)
        torch.testing.assert_close(flat[name + "hook_pattern"], uniform.expand_as(flat[name + "hook_pattern"]))
