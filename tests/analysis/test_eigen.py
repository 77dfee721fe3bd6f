"""Eigenpairs of Q_u: reconstruction, the Krylov fast path against dense eigh, degeneracy, dtypes, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hooked_bilinear.analysis import BilinearFactors, eigendecompose, interaction_matrix
from hooked_bilinear.analysis.eigen import krylov_top_k
from tests.analysis.factories import factors_of, random_layer


def dense_reference(Q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-|lambda| k of torch.linalg.eigh of the explicit Q, float64."""
    lam, vec = torch.linalg.eigh(Q.double())
    order = lam.abs().argsort(dim=-1, descending=True)[..., :k]
    return torch.gather(lam, -1, order), torch.gather(vec, -1, order[..., None, :].expand(*vec.shape[:-1], k))


@pytest.mark.parametrize("bias", [False, True])
def test_all_eigenpairs_reconstruct_Q(bias):
    factors = factors_of(random_layer(10, 24, bias, seed=1))
    u = torch.randn(3, 10, dtype=torch.float64)
    Q = interaction_matrix(factors, u)
    eigen = eigendecompose(factors, u)
    torch.testing.assert_close(eigen.v.mT @ torch.diag_embed(eigen.lambda_) @ eigen.v, Q, atol=1e-12, rtol=1e-10)
    assert (eigen.lambda_.abs().diff(dim=-1) <= 1e-12).all(), "not ordered by |lambda| descending"
    peak = torch.gather(eigen.v, -1, eigen.v.abs().argmax(-1, keepdim=True))
    assert (peak > 0).all(), "largest entry of every eigenvector is positive"


@settings(max_examples=25, deadline=None)
@given(
    d_model=st.integers(32, 160),
    ratio=st.sampled_from([1, 2, 4]),
    bias=st.booleans(),
    k=st.integers(1, 4),
    method=st.sampled_from(["krylov", "factored"]),
    seed=st.integers(0, 10_000),
)
def test_krylov_top_k_equals_dense_eigh(d_model, ratio, bias, k, method, seed):
    layer = random_layer(d_model, ratio * d_model, bias, seed, dtype=torch.float32)
    factors = factors_of(layer)
    u = torch.randn(3, d_model, generator=torch.Generator().manual_seed(seed))
    fast = eigendecompose(factors, u, k, method=method)
    ref_lambda, ref_v = dense_reference(interaction_matrix(factors, u), k)
    torch.testing.assert_close(fast.lambda_.double(), ref_lambda, atol=1e-4 * ref_lambda.abs().max().item(), rtol=1e-4)
    # eigenvectors agree up to sign wherever the eigenvalue is well separated from the rest of the spectrum
    full = torch.linalg.eigvalsh(interaction_matrix(factors, u).double())
    for n in range(3):
        for i in range(k):
            gap = (full[n] - ref_lambda[n, i]).abs().sort().values[1]
            if gap > 1e-2 * full[n].abs().max():
                overlap = (fast.v[n, i].double() @ ref_v[n, :, i]).abs()
                assert overlap > 1 - 1e-3


def test_krylov_resolves_repeated_eigenvalues():
    g = torch.Generator().manual_seed(0)
    d = 96
    basis = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q
    spectrum = torch.linspace(-1, 1, d, dtype=torch.float64) * 0.5
    spectrum[:3] = 3.0  # multiplicity 3 at the top
    spectrum[3:5] = -2.5  # multiplicity 2 at the bottom
    Q = (basis * spectrum) @ basis.T
    eigen = krylov_top_k(Q[None], 6, tol=1e-10, block=4)
    torch.testing.assert_close(eigen.lambda_[0], torch.tensor([3.0, 3.0, 3.0, -2.5, -2.5, 0.5], dtype=torch.float64))
    residual = eigen.v[0] @ Q - eigen.lambda_[0, :, None] * eigen.v[0]
    assert residual.abs().max() < 1e-8
    torch.testing.assert_close(eigen.v[0] @ eigen.v[0].T, torch.eye(6, dtype=torch.float64), atol=1e-10, rtol=0)


def test_krylov_falls_back_to_dense_when_it_cannot_converge():
    factors = factors_of(random_layer(64, 128, False, seed=2))
    u = torch.randn(2, 64, dtype=torch.float64)
    Q = interaction_matrix(factors, u)
    eigen = krylov_top_k(Q, 5, tol=0.0)  # a zero tolerance is never met by a Ritz pair: the dense eigh answers
    ref_lambda, _ = dense_reference(Q, 5)
    torch.testing.assert_close(eigen.lambda_, ref_lambda, atol=1e-12, rtol=1e-12)


def test_single_direction_matches_batch_and_auto_matches_dense():
    factors = factors_of(random_layer(128, 256, True, seed=3, dtype=torch.float32))
    u = torch.randn(4, 128)
    batch = eigendecompose(factors, u, 8)
    single = eigendecompose(factors, u[2], 8)
    assert single.lambda_.shape == (8,) and single.v.shape == (8, 129)
    torch.testing.assert_close(single.lambda_, batch.lambda_[2])
    dense = eigendecompose(factors, u, 8, method="dense")
    torch.testing.assert_close(batch.lambda_, dense.lambda_, atol=1e-4, rtol=1e-4)


def test_low_precision_weights_are_analysed_in_float32_and_float64_on_request():
    layer = random_layer(16, 32, True, dtype=torch.bfloat16)
    assert factors_of(layer).dtype == torch.float32
    assert factors_of(layer, dtype=torch.float64).dtype == torch.float64
    u = torch.randn(16, dtype=torch.bfloat16)
    assert eigendecompose(factors_of(layer), u, 4).lambda_.dtype == torch.float32


def test_progress_bar_for_long_sweeps(capsys):
    factors = factors_of(random_layer(16, 16, False))
    eigendecompose(factors, torch.randn(300, 16, dtype=torch.float64), 2, max_memory=16 * 16 * 8 * 40, progress=True)
    assert "eigendecompose" in capsys.readouterr().err


@pytest.mark.parametrize(
    "u, k, match",
    [
        (torch.randn(7, dtype=torch.float64), 2, "d_model=6"),
        (torch.randn(2, 3, 6, dtype=torch.float64), 2, r"\[n, 6\]"),
        (torch.randn(6, dtype=torch.float64), 7, "1 <= k <= 6"),
        (torch.randn(6, dtype=torch.float64), 0, "1 <= k <= 6"),
        (torch.tensor([1.0, float("nan"), 0, 0, 0, 0], dtype=torch.float64), 2, "NaN/inf"),
        (torch.tensor([1.0, float("inf"), 0, 0, 0, 0], dtype=torch.float64), 2, "NaN/inf"),
    ],
    ids=["wrong-size", "wrong-rank", "k-too-large", "k-zero", "nan-direction", "inf-direction"],
)
def test_bad_directions_and_k(u, k, match):
    factors = factors_of(random_layer(6, 8, False))
    with pytest.raises(ValueError, match=match):
        eigendecompose(factors, u, k)


@pytest.mark.parametrize("name", ["W_gate", "W_in", "W_out", "b_out"])
def test_non_finite_weights_are_refused(name):
    layer = random_layer(6, 8, True)
    layer[name] = layer[name].clone()
    layer[name].view(-1)[3] = float("nan")
    with pytest.raises(ValueError, match=f"MLP weight {name} holds 1 NaN/inf"):
        BilinearFactors.from_weights(**layer)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="'dense', 'krylov' or 'factored'"):
        eigendecompose(factors_of(random_layer(6, 8, False)), torch.randn(6, dtype=torch.float64), 2, method="lanczos")


@pytest.mark.parametrize("method", ["krylov", "factored"])
def test_krylov_converges_on_its_own(monkeypatch, method):
    """On a random layer the Krylov iteration must converge by itself: the dense fallback is for rare cases only."""
    import hooked_bilinear.analysis.eigen as eigen_module

    def no_fallback(Q, k):
        raise AssertionError("the Krylov iteration fell back to the dense eigh")

    monkeypatch.setattr(eigen_module, "dense_top_k", no_fallback)
    factors = factors_of(random_layer(256, 512, True, seed=7, dtype=torch.float32))
    u = torch.randn(6, 256, generator=torch.Generator().manual_seed(7))
    fast = eigendecompose(factors, u, 8, method=method)
    monkeypatch.undo()
    ref_lambda, _ = dense_reference(interaction_matrix(factors, u), 8)
    torch.testing.assert_close(fast.lambda_.double(), ref_lambda, atol=1e-4 * ref_lambda.abs().max().item(), rtol=1e-4)


@pytest.mark.parametrize("entry", ["decompose", "hosvd", "truncate"])
def test_solver_options_reach_eigendecompose(entry):
    """decompose / hosvd / truncate run the EigenSolver they are given: a dense solve gives the same eigenpairs as
    the default, and an unknown method is refused by eigendecompose itself."""
    from hooked_bilinear.analysis import EigenSolver, decompose, hosvd, truncate

    factors = factors_of(random_layer(6, 8, True))
    u = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    run = {
        "decompose": lambda solver: decompose(factors, x, u, 3, solver=solver).lambda_,
        "hosvd": lambda solver: hosvd(factors, 2, 3, solver=solver).lambda_,
        "truncate": lambda solver: truncate(factors, u, 3, solver=solver).lambda_,
    }[entry]
    torch.testing.assert_close(run(EigenSolver(method="dense")), run(EigenSolver()), atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="'dense', 'krylov' or 'factored'"):
        run(EigenSolver(method="lanczos"))
