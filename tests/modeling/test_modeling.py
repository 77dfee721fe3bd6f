"""BilinearForCausalLM on its own (no bridge) equals the docs/formats.md forward pass; its cache and mask are right."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.loading.pretrained import load_model
from tests.reference import reference_logits, variants, write_checkpoint

VARIANTS = variants()


@pytest.mark.smoke
@pytest.mark.parametrize("name,config", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_model_class_matches_reference(tmp_path, tokens, name, config):
    state = write_checkpoint(tmp_path / name, config)
    model = load_model(tmp_path / name)
    with torch.no_grad():
        got = model(tokens).logits
    assert (got - reference_logits(state, config, tokens)).abs().max().item() <= 1e-5


@pytest.mark.smoke
def test_kv_cache_and_mask(checkpoint, tokens):
    folder, _, _ = checkpoint(bias=True)
    model = load_model(folder)
    with torch.no_grad():
        full = model(tokens).logits
        prefix = model(tokens[:, :6], use_cache=True)
        step = model(tokens[:, 6:], past_key_values=prefix.past_key_values, use_cache=True).logits
        torch.testing.assert_close(torch.cat([prefix.logits, step], 1), full, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(tokens, attention_mask=torch.ones_like(tokens)).logits, full)
        # A masked-out key changes what later queries see, and nothing before it.
        mask = torch.ones_like(tokens)
        mask[:, 3] = 0
        masked = model(tokens, attention_mask=mask).logits
        torch.testing.assert_close(masked[:, :3], full[:, :3])
        assert (masked[:, 4:] - full[:, 4:]).abs().max() > 1e-3


@pytest.mark.smoke
def test_generate_with_transformers(checkpoint, tokens):
    folder, _, _ = checkpoint()
    model = load_model(folder)
    out = model.generate(tokens[:1, :4], max_new_tokens=5, do_sample=False, pad_token_id=0)
    manual = tokens[:1, :4]
    with torch.no_grad():
        for _ in range(5):
            manual = torch.cat([manual, model(manual).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, manual)
