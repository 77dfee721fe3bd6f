"""Eigenpairs of Q_u: reconstruction, the Krylov fast path against dense eigh, degeneracy, dtypes, bad input."""

from __future__ import annotations

import inspect

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hooked_bilinear.analysis import BilinearFactors, EigenSolver, eigendecompose, interaction_matrix
from hooked_bilinear.analysis.eigen import DenseOperator, FactoredOperator, dense_top_k, krylov_top_k
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


def test_ties_in_magnitude_come_negative_first():
    """Eigenvalues of equal |lambda| keep eigh's ascending order (the negative one first), whatever their number."""
    spectrum = torch.tensor([1.0, -1.0] * 16 + [0.5], dtype=torch.float64)
    eigen = dense_top_k(torch.diag(spectrum)[None], 33)
    expected = torch.tensor([-1.0] * 16 + [1.0] * 16 + [0.5], dtype=torch.float64)
    torch.testing.assert_close(eigen.lambda_[0], expected, atol=0, rtol=0)


@pytest.mark.parametrize(
    "d_in, k, method",
    [(128, 16, "krylov"), (128, 17, "dense"), (127, 1, "dense"), (136, 17, "krylov")],
)
def test_auto_takes_krylov_for_few_pairs_of_a_large_matrix(capsys, d_in, k, method):
    """ "auto" is "krylov" when 8 k <= d_in and d_in >= 128, else "dense" (the progress bar names the method)."""
    factors = factors_of(random_layer(d_in, 8, False))
    eigendecompose(factors, torch.randn(d_in, dtype=torch.float64), k, progress=True)
    assert f"eigendecompose ({method}, top {k})" in capsys.readouterr().err


def test_block_default_and_range():
    """Block size 4 by default (the largest multiplicity resolved, module doc); 1 works, 0 is refused."""
    assert inspect.signature(eigendecompose).parameters["block"].default == 4 == EigenSolver().block
    assert inspect.signature(krylov_top_k).parameters["block"].default == 4
    factors = factors_of(random_layer(12, 16, False))
    u = torch.randn(12, dtype=torch.float64)
    ref = eigendecompose(factors, u, 2, method="dense")
    torch.testing.assert_close(eigendecompose(factors, u, 2, method="krylov", block=1).lambda_, ref.lambda_)
    with pytest.raises(ValueError, match="block must be >= 1, got 0"):
        eigendecompose(factors, u, 2, method="krylov", block=0)


def test_directions_go_in_batches_that_fit_the_memory_given(monkeypatch):
    """Per direction, Q_u plus the Krylov basis and its image (2 d_in^2 numbers) in 3/4 of max_memory (the rest is
    for building Q): with room for 3 directions, 7 go 3 at a time, with the eigenpairs of one at a time."""
    import hooked_bilinear.analysis.eigen as eigen_module

    seen: list[list[tuple[int, int]]] = []
    original = eigen_module.chunks

    def spy(n, per_item_bytes, budget):
        seen.append(list(original(n, per_item_bytes, budget)))
        return iter(seen[-1])

    factors = factors_of(random_layer(6, 8, False))
    u = torch.randn(7, 6, dtype=torch.float64)
    one = eigendecompose(factors, u, 3)
    monkeypatch.setattr(eigen_module, "chunks", spy)
    per_direction = 2 * 6 * 6 * 8
    batched = eigendecompose(factors, u, 3, max_memory=3 * per_direction * 4 // 3)
    assert seen == [[(0, 3), (3, 6), (6, 7)]]
    torch.testing.assert_close(batched.lambda_, one.lambda_, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "n, batches, progress, shown",
    [(256, 2, None, True), (255, 2, None, False), (300, 1, None, False), (300, 2, False, False), (2, 1, True, True)],
)
def test_progress_bar_by_default_for_long_sweeps_only(capsys, n, batches, progress, shown):
    """By default a bar shows for at least 256 directions in more than one batch; progress=True/False overrides."""
    factors = factors_of(random_layer(4, 4, False))
    per_direction = 2 * 4 * 4 * 8
    size = -(-n // batches)  # directions per batch
    max_memory = -(-size * per_direction * 4 // 3) if batches > 1 else None
    eigendecompose(factors, torch.randn(n, 4, dtype=torch.float64), 1, max_memory=max_memory, progress=progress)
    err = capsys.readouterr().err
    assert ("eigendecompose" in err) == shown
    if shown:
        assert f"{n}/{n}" in err and "dir/s" in err  # the bar counts directions out of the total


def test_a_solver_passes_every_option_to_eigendecompose(monkeypatch):
    import hooked_bilinear.analysis.eigen as eigen_module

    calls = []
    monkeypatch.setattr(eigen_module, "eigendecompose", lambda *args, **kwargs: calls.append((args, kwargs)))
    solver = EigenSolver(method="krylov", tol=1e-3, block=2, max_memory=1234, progress=True)
    factors, u = object(), torch.ones(3)
    solver(factors, u, 5)  # type: ignore[arg-type]
    expected = dict(method="krylov", tol=1e-3, block=2, max_memory=1234, progress=True)
    assert calls == [((factors, u, 5), expected)]


def random_symmetric(d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    A = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return scale * (A + A.T) / 2


class CountingOperator(DenseOperator):
    """A DenseOperator that counts the rows it is applied to (the size the Krylov space grew to)."""

    def __init__(self, Q: torch.Tensor, rows: list[int] | None = None) -> None:
        super().__init__(Q)
        self.rows = [0] if rows is None else rows

    def apply(self, Y: torch.Tensor) -> torch.Tensor:
        self.rows[0] += Y.shape[1]
        return super().apply(Y)

    def select(self, keep: torch.Tensor) -> CountingOperator:
        return CountingOperator(self.Q[keep], self.rows)


def test_every_pair_returned_meets_the_residual_tolerance():
    """The convergence test is ||Q v - lambda v|| <= tol |lambda_max| per Ritz pair, also for a small-scale Q
    (eigenvalues ~1e-3) where a test relative to 1 / |lambda| would be much looser."""
    Q = random_symmetric(200, seed=4, scale=1e-4)[None]
    tol = 1e-8
    eigen = krylov_top_k(Q, 4, tol=tol)
    residual = (eigen.v @ Q[0] - eigen.lambda_[..., None] * eigen.v).norm(dim=-1)
    assert (residual <= tol * eigen.lambda_[:, :1].abs()).all()
    ref_lambda, _ = dense_reference(Q, 4)
    torch.testing.assert_close(eigen.lambda_, ref_lambda, atol=1e-12, rtol=0)


def test_the_krylov_space_grows_to_half_the_matrix_and_room_for_k_pairs_before_the_dense_fallback():
    """Never converging (tol 0), the space grows to max(d / 2, 2 k + block) rows, rounded down to whole blocks."""
    for d, k, rows in ((64, 5, 32), (16, 5, 12), (20, 2, 8)):
        op = CountingOperator(random_symmetric(d, seed=d)[None])
        eigen = krylov_top_k(op, k, tol=0.0, block=4, d=d)
        assert op.rows[0] == rows, (d, k)
        torch.testing.assert_close(eigen.lambda_, dense_reference(op.Q, k)[0], atol=1e-12, rtol=0)


def test_a_matrix_too_small_for_the_krylov_space_gets_the_dense_eigenpairs_with_canonical_signs():
    Q = random_symmetric(6, seed=1)[None]  # the space would be 4 rows (a whole block): too few for 5 pairs
    eigen = krylov_top_k(Q, 5, tol=1e-10, block=4)
    ref_lambda, ref_v = dense_reference(Q, 5)
    torch.testing.assert_close(eigen.lambda_, ref_lambda, atol=1e-12, rtol=0)
    torch.testing.assert_close(eigen.v.abs(), ref_v.mT.abs(), atol=1e-12, rtol=0)
    peak = torch.gather(eigen.v, -1, eigen.v.abs().argmax(-1, keepdim=True))
    assert (peak > 0).all()


def test_krylov_is_deterministic_whatever_the_global_random_state():
    u = torch.randn(1, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    Q = interaction_matrix(factors_of(random_layer(200, 100, False, seed=7)), u)  # Krylov converges on it
    torch.manual_seed(1)
    first = krylov_top_k(Q, 3, tol=1e-6)
    torch.manual_seed(2)
    second = krylov_top_k(Q, 3, tol=1e-6)
    assert torch.equal(first.lambda_, second.lambda_) and torch.equal(first.v, second.v)


def test_an_operator_needs_its_size():
    factors = factors_of(random_layer(8, 8, False))
    with pytest.raises(ValueError, match=r"^pass d \(the matrices' size\) with an operator\.$"):
        krylov_top_k(FactoredOperator(factors, torch.ones(1, 8, dtype=torch.float64)), 2, 1e-8)


def test_float64_krylov_converges_on_its_own(monkeypatch):
    """In float64 too (tolerance 1e-10) the iteration converges without the dense fallback (on a layer of rank 100
    in 200 dimensions, whose top eigenpairs a Krylov space of d / 2 holds)."""
    import hooked_bilinear.analysis.eigen as eigen_module

    def no_fallback(Q, k):
        raise AssertionError("the Krylov iteration fell back to the dense eigh")

    u = torch.randn(3, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    Q = interaction_matrix(factors_of(random_layer(200, 100, False, seed=7)), u)
    monkeypatch.setattr(eigen_module, "dense_top_k", no_fallback)
    eigen = krylov_top_k(Q, 4, tol=1e-10)
    monkeypatch.undo()
    torch.testing.assert_close(eigen.lambda_, dense_reference(Q, 4)[0], atol=1e-9, rtol=0)


@pytest.mark.parametrize("method", ["dense", "krylov", "factored"])
def test_each_method_runs_its_solver_with_the_options_given(monkeypatch, method):
    """ "dense" never runs the Krylov iteration; "krylov" runs it on the explicit Q_u, "factored" on the factors;
    both with the block size given; Q_u is built in a quarter of the memory budget."""
    import hooked_bilinear.analysis.eigen as eigen_module

    calls: list[tuple[str, object]] = []
    krylov, build = eigen_module.krylov_top_k, eigen_module.interaction_matrices

    def krylov_spy(op, k, tol, block=4, d=None):
        calls.append(("krylov", (type(op).__name__, block)))
        return krylov(op, k, tol, block, d)

    def build_spy(factors, c, max_memory=None):
        calls.append(("build", max_memory))
        return build(factors, c, max_memory)

    monkeypatch.setattr(eigen_module, "krylov_top_k", krylov_spy)
    monkeypatch.setattr(eigen_module, "interaction_matrices", build_spy)
    factors = factors_of(random_layer(12, 16, False))
    u = torch.randn(12, dtype=torch.float64)
    eigen = eigendecompose(factors, u, 2, method=method, block=2, max_memory=4000)
    expected = {
        "dense": [("build", 1000)],
        "krylov": [("build", 1000), ("krylov", ("DenseOperator", 2))],
        "factored": [("krylov", ("FactoredOperator", 2))],
    }[method]
    assert calls[: len(expected)] == expected
    assert all(name != "krylov" for name, _ in calls) if method == "dense" else True
    ref_lambda, _ = dense_reference(interaction_matrix(factors, u), 2)
    torch.testing.assert_close(eigen.lambda_, ref_lambda, atol=1e-9, rtol=0)
    if method != "dense":  # without block=, the documented default 4 reaches the iteration
        calls.clear()
        eigendecompose(factors, u, 2, method=method)
        assert [args for name, args in calls if name == "krylov"] == [(expected[-1][1][0], 4)]


def test_ritz_pairs_and_residuals_against_their_definition():
    """Rayleigh-Ritz in the row space of V: theta and S are the top-|theta| eigenpairs of V Q V^T, the Ritz vectors
    S V, and each pair's own residual ||v Q - theta v|| (a norm per pair over the d coordinates, not per coordinate
    over the pairs: k = 3 pairs of d = 9 coordinates, so a norm over the wrong axis has another shape too)."""
    from hooked_bilinear.analysis.eigen import _ritz

    generator = torch.Generator().manual_seed(5)
    m, s, d, k = 2, 5, 9, 3
    Q = torch.randn(m, d, d, dtype=torch.float64, generator=generator)
    Q = Q + Q.mT
    V = torch.linalg.qr(torch.randn(m, d, s, dtype=torch.float64, generator=generator)).Q.mT  # orthonormal rows
    theta, ritz, residual = _ritz(V, V @ Q, k)
    assert theta.shape == (m, k) and ritz.shape == (m, k, d) and residual.shape == (m, k)
    for i in range(m):
        lam, S = torch.linalg.eigh(V[i] @ Q[i] @ V[i].T)
        top = lam.abs().argsort(descending=True)[:k]
        torch.testing.assert_close(theta[i], lam[top], atol=1e-12, rtol=0)
        for j in range(k):
            v = S[:, top[j]] @ V[i]
            sign = 1.0 if (ritz[i, j] @ v) > 0 else -1.0  # an eigenvector's sign is arbitrary
            torch.testing.assert_close(ritz[i, j], sign * v, atol=1e-12, rtol=0)
            expected = torch.linalg.vector_norm(v @ Q[i] - lam[top[j]] * v).item()
            assert residual[i, j].item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
            assert expected > 1e-3  # V spans no invariant subspace: every residual is far from zero
