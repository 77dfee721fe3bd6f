"""JumpReLU SAE: a feature is on only where its pre-activation strictly exceeds its threshold."""

from __future__ import annotations

import torch

from hooked_bilinear import sae as S

D_IN, D_SAE = 4, 6


def test_threshold_is_strict_and_per_feature() -> None:
    sae = S.JumpReLUSAE(D_IN, D_SAE, apply_b_dec_to_input=False)
    threshold = torch.tensor([0.5, 1.0, 0.0, 2.0, 0.25, 3.0])
    with torch.no_grad():
        sae.threshold.copy_(threshold)
        sae.b_enc.copy_(threshold)  # W_enc = 0: pre = b_enc = threshold exactly, so every feature is off
    x = torch.randn(3, D_IN)
    assert torch.equal(sae.encode(x), torch.zeros(3, D_SAE))
    with torch.no_grad():
        sae.b_enc.add_(0.125)  # just above each threshold: on, with value relu(pre)
    assert torch.equal(sae.encode(x), (threshold + 0.125).expand(3, D_SAE))
    with torch.no_grad():
        sae.threshold.fill_(-1.0)  # a negative threshold still passes through relu
        sae.b_enc.fill_(-0.5)
    assert torch.equal(sae.encode(x), torch.zeros(3, D_SAE))


def test_threshold_follows_dtype_and_device() -> None:
    sae = S.JumpReLUSAE(D_IN, D_SAE, dtype=torch.float64, device="meta")
    assert sae.threshold.dtype == torch.float64 and sae.threshold.device.type == "meta"
    assert torch.equal(S.JumpReLUSAE(D_IN, D_SAE).threshold, torch.zeros(D_SAE))
