"""The SAE base class: construction (sizes, dtype, device), encode / decode against their explicit formulas."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear import sae as S
from hooked_bilinear.errors import SAEError

D_IN, D_SAE = 5, 12
CLASSES = [S.ReLUSAE, S.TopKSAE, S.JumpReLUSAE]


def make(cls: type, **options: object) -> S.SAE:
    extra = {"k": 4} if cls is S.TopKSAE else {}
    return cls(D_IN, D_SAE, **extra, **options)


def randomised(sae: S.SAE, seed: int = 0) -> S.SAE:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
    return sae


@pytest.mark.parametrize("cls", CLASSES)
def test_defaults_sizes_dtype_and_device(cls: type) -> None:
    sae = make(cls)
    assert sae.apply_b_dec_to_input is True  # SAELens's default: the decoder bias is subtracted first
    assert make(cls, apply_b_dec_to_input=False).apply_b_dec_to_input is False
    names = {"W_enc", "W_dec", "b_enc", "b_dec"} | ({"threshold"} if cls is S.JumpReLUSAE else set())
    assert {name for name, _ in sae.named_parameters()} == names
    wide = make(cls, dtype=torch.float64)
    assert {p.dtype for p in wide.parameters()} == {torch.float64} and wide.dtype == torch.float64
    on_meta = make(cls, device="meta")
    assert {p.device.type for p in on_meta.parameters()} == {"meta"}
    extra = {"k": 1} if cls is S.TopKSAE else {}
    assert cls(1, 1, **extra).d_sae == 1  # the smallest SAE
    for d_in, d_sae in ((0, 3), (3, 0), (-1, -1)):
        with pytest.raises(SAEError) as info:
            cls(d_in, d_sae, **extra)
        assert str(info.value) == f"d_in and d_sae must be positive, got d_in={d_in}, d_sae={d_sae}."


@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_encode_decode_forward_match_the_formulas(apply_b_dec: bool) -> None:
    sae = randomised(S.ReLUSAE(D_IN, D_SAE, apply_b_dec_to_input=apply_b_dec, dtype=torch.float64), 1)
    x = torch.randn(2, 3, D_IN, generator=torch.Generator().manual_seed(2))  # float32 into a float64 SAE
    shifted = x.double() - sae.b_dec if apply_b_dec else x.double()
    pre = torch.einsum("bpi,if->bpf", shifted, sae.W_enc) + sae.b_enc
    f = sae.encode(x)
    assert f.dtype == torch.float64
    torch.testing.assert_close(f, pre.clamp_min(0), rtol=0, atol=1e-12)
    recon = torch.einsum("bpf,fi->bpi", f, sae.W_dec) + sae.b_dec
    torch.testing.assert_close(sae.decode(f.float()), recon, rtol=0, atol=1e-5)  # float32 features too
    torch.testing.assert_close(sae(x), sae.decode(f), rtol=0, atol=0)


def test_size_errors_and_feature_ids() -> None:
    sae = S.ReLUSAE(D_IN, D_SAE)
    with pytest.raises(SAEError) as info:
        sae.encode(torch.zeros(2, D_IN + 1))
    assert str(info.value).startswith(f"this SAE reads vectors of size d_in={D_IN}, but got activations of size 6:")
    named = S.ReLUSAE(D_IN, D_SAE, metadata={"hook_name": "blocks.0.mlp.hook_in"})
    with pytest.raises(SAEError, match=r"^this SAE \(hook blocks.0.mlp.hook_in\) reads"):
        named.encode(torch.zeros(D_IN + 1))
    with pytest.raises(SAEError) as info:
        sae.decode(torch.zeros(2, 3, D_SAE + 1))
    assert str(info.value) == f"feature activations of size {D_SAE + 1} given; this SAE has d_sae={D_SAE} features."
    assert [sae.check_feature(i) for i in (0, D_SAE - 1)] == [0, D_SAE - 1]
    assert type(sae.check_feature(torch.tensor(3))) is int  # type: ignore[arg-type]
    for bad in (-1, D_SAE):
        with pytest.raises(IndexError, match=f"feature {bad} does not exist: this SAE has features 0..{D_SAE - 1}"):
            sae.check_feature(bad)
