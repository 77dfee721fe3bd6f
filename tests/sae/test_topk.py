"""TopK SAE: the k largest pre-activations per vector, relu'd, against a brute-force sort; k's range."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear import sae as S
from hooked_bilinear.errors import SAEError

D_IN, D_SAE = 5, 12


def test_activation_keeps_the_k_largest_of_each_vector() -> None:
    g = torch.Generator().manual_seed(0)
    sae = S.TopKSAE(D_IN, D_SAE, k=3, apply_b_dec_to_input=False)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(2, 4, D_IN, generator=g)  # 3-d: the top k are taken per vector, along the feature axis
    pre = (x @ sae.W_enc + sae.b_enc).detach()  # apply_b_dec_to_input=False: no shift
    expected = torch.zeros_like(pre)
    for i in range(2):
        for j in range(4):
            order = sorted(range(D_SAE), key=lambda f: -float(pre[i, j, f]))[:3]
            for f in order:
                expected[i, j, f] = pre[i, j, f].clamp_min(0)
    torch.testing.assert_close(sae.encode(x), expected, rtol=0, atol=0)


def test_k_range_dtype_device_and_cfg() -> None:
    assert S.TopKSAE(D_IN, D_SAE, k=1).k == 1 and S.TopKSAE(D_IN, D_SAE, k=D_SAE).k == D_SAE
    for k in (0, D_SAE + 1):
        with pytest.raises(SAEError) as info:
            S.TopKSAE(D_IN, D_SAE, k=k)
        assert str(info.value) == f"TopK SAE needs 1 <= k <= d_sae={D_SAE}, got k={k}."
    sae = S.TopKSAE(D_IN, D_SAE, k=2, dtype=torch.float64, device="meta", apply_b_dec_to_input=False)
    assert {(p.dtype, p.device.type) for p in sae.parameters()} == {(torch.float64, "meta")}
    assert sae.apply_b_dec_to_input is False and S.TopKSAE(D_IN, D_SAE, k=2).apply_b_dec_to_input is True
    # SAELens 6's TopK cfg: k, and no rescaling by decoder norms (which SAELens would otherwise apply)
    assert sae.architecture_cfg() == {"k": 2, "rescale_acts_by_decoder_norm": False}
