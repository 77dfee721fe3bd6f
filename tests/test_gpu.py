"""GPU: float32 / bfloat16 / float16 on CUDA; caches stay on the device. Skipped without CUDA."""

from __future__ import annotations

import warnings

import pytest
import torch

import hooked_bilinear as hb
from tests.reference import reference_logits

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 0.25, torch.float16: 0.05}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
def test_cuda_forward_and_cache(checkpoint, tokens, dtype, compatibility_mode):
    torch.backends.cuda.matmul.allow_tf32 = False
    folder, config, state = checkpoint(bias=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = hb.from_pretrained(folder, device="cuda", dtype=dtype, compatibility_mode=compatibility_mode)
    logits, cache = bridge.run_with_cache(tokens.cuda())
    assert logits.device.type == "cuda" and logits.dtype == dtype
    assert all(t.device.type == "cuda" for t in cache.values())
    expected = reference_logits(state, config, tokens)
    assert (logits.float().cpu() - expected).abs().max().item() <= TOLERANCE[dtype]
    post = cache["blocks.0.mlp.hook_post"]
    assert torch.equal(post, cache["blocks.0.mlp.hook_pre"] * cache["blocks.0.mlp.hook_pre_linear"])


def test_cuda_generate_embedded():
    bridge = hb.from_pretrained("ts-synthetic-2l", device="cuda")
    out = bridge.generate("once upon a time", max_new_tokens=8, do_sample=False, verbose=False)
    cpu = hb.from_pretrained("ts-synthetic-2l").generate(
        "once upon a time", max_new_tokens=8, do_sample=False, verbose=False
    )
    assert out == cpu


@pytest.mark.parametrize("compatibility_mode", [False, True], ids=["raw", "compat"])
def test_cuda_bilinear_llama(tmp_path, compatibility_mode):
    from tests.llama import write_llama

    torch.backends.cuda.matmul.allow_tf32 = False
    folder, model = write_llama(tmp_path)
    tokens = torch.randint(0, 330, (2, 24))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = hb.from_pretrained(folder, device="cuda", compatibility_mode=compatibility_mode)
    assert all(isinstance(block.mlp, hb.HookedBilinearMLP) for block in bridge.blocks)
    logits, cache = bridge.run_with_cache(tokens.cuda())
    assert all(t.device.type == "cuda" for t in cache.values())
    with torch.no_grad():
        assert (logits.cpu() - model(tokens).logits).abs().max().item() <= 1e-4


def test_cuda_bilinearize_with_autocast():
    from tests.llama import tiny_llama

    model = hb.bilinearize(
        tiny_llama("silu", std=0.05),
        torch.randint(0, 330, (5000,)),
        device="cuda",
        steps=10,
        batch_size=4,
        seq_len=32,
        warmup_steps=2,
        progress=False,
    )
    assert model.config.hidden_act == "linear" and next(model.parameters()).device.type == "cuda"
    details = hb.publishing.provenance.provenance_of(model).details
    assert details["peak_cuda_memory_bytes"] > 0
