"""Spectrum statistics and eigenvector similarity on spectra whose answers are known."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.analysis import eigenvector_similarity, spectrum_stats


def test_statistics_of_known_spectra():
    one = torch.tensor([0.0, 0.0, 3.0, 0.0])
    flat = torch.tensor([1.0, -1.0, 1.0, -1.0])
    stats = spectrum_stats(torch.stack([one, flat]), k=2)
    torch.testing.assert_close(stats.effective_rank, torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(stats.top_k_mass, torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(stats.balance, torch.tensor([1.0, 0.0]))
    lam = torch.tensor([2.0, -1.0, 0.5])
    s = spectrum_stats(lam, k=1)
    assert s.effective_rank.item() == pytest.approx(3.5**2 / 5.25)
    assert s.top_k_mass.item() == pytest.approx(4 / 5.25)
    assert s.balance.item() == pytest.approx(1.5 / 3.5)


def test_zero_spectrum_and_bad_k():
    stats = spectrum_stats(torch.zeros(3), k=2)
    assert stats.effective_rank.item() == 0 and stats.balance.item() == 0
    with pytest.raises(ValueError, match="k must lie"):
        spectrum_stats(torch.ones(3), k=4)


def test_similarity_ignores_sign_and_sees_rotation():
    v = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64)).Q.T[:3]
    sim = eigenvector_similarity(v, -v)
    torch.testing.assert_close(sim, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="different sizes"):
        eigenvector_similarity(v, torch.randn(2, 5))
