"""as_factors: the factors every analysis works on, in the analysis dtype."""

from __future__ import annotations

import torch

from hooked_bilinear.analysis.factors import BilinearFactors, as_factors
from tests.analysis.factories import factors_of, random_layer


def test_factors_given_are_cast_to_the_dtype_asked_for():
    factors = factors_of(random_layer(6, 8, True, dtype=torch.float32))
    assert as_factors(factors) is factors  # float32 is already an analysis dtype
    wide = as_factors(factors, torch.float64)
    assert wide.dtype == torch.float64 and wide.augmented == factors.augmented
    torch.testing.assert_close(wide.W_gate, factors.W_gate.double(), atol=0, rtol=0)


def test_half_precision_factors_are_analysed_in_float32():
    f = factors_of(random_layer(6, 8, False))
    half = BilinearFactors(f.W_gate.half(), f.W_in.half(), f.W_out.half(), f.augmented)
    assert as_factors(half).dtype == torch.float32
