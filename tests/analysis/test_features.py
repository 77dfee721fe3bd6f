"""SAE feature analyses against the brute-force math: the feature-space identity, output-feature pre-activations,
Fig. 9 correlations, rankings, interactions, dataset examples, and the factors of plain transformers modules."""

from __future__ import annotations

import math
import statistics
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP

import hooked_bilinear as hb
from hooked_bilinear import NotBilinearError
from hooked_bilinear import analysis as A
from hooked_bilinear import sae as S
from hooked_bilinear.analysis import BilinearFactors
from hooked_bilinear.errors import SAEError
from tests.analysis.factories import brute_force_tensor, factors_of, mlp_forward, random_layer
from tests.analysis.models import random_model

D, H = 8, 12


def random_sae(d_in: int, d_sae: int, k: int = 5, seed: int = 0, dtype: torch.dtype = torch.float64) -> S.TopKSAE:
    g = torch.Generator().manual_seed(seed)
    sae = S.TopKSAE(d_in, d_sae, k=k, dtype=dtype)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return sae.requires_grad_(False)


def assert_identity(forward, factors_or_mlp, sae: S.TopKSAE, x: torch.Tensor, u: torch.Tensor) -> None:
    """u . mlp(x_hat) == f^T M f + f . linear + constant for x_hat = f D + b_dec, to 1e-5 relative (float64)."""
    f = sae.encode(x).double()
    x_hat = f @ sae.W_dec.double() + sae.b_dec.double()
    expected = forward(x_hat) @ u.double().T  # [n_x, n_u]
    M = A.feature_interactions(factors_or_mlp, sae, u, dtype=torch.float64)
    bias = A.feature_bias_terms(factors_or_mlp, sae, u, dtype=torch.float64)
    got = torch.einsum("xi,nij,xj->xn", f, M, f) + f @ bias.linear.T + bias.constant
    assert (f != 0).sum(-1).min() > 0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    single = A.feature_interactions(factors_or_mlp, sae, u[0], dtype=torch.float64)
    assert single.shape == (sae.d_sae, sae.d_sae)
    torch.testing.assert_close(single, M[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [False, True])
def test_identity_random_layer(bias: bool) -> None:
    layer = random_layer(D, H, bias=bias, seed=1)
    sae = random_sae(D, 4 * D, seed=2)
    x = torch.randn(20, D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    u = torch.randn(3, D, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert_identity(lambda z: mlp_forward(layer, z), factors_of(layer), sae, x, u)
    # D Q_u D^T from the brute-force tensor B
    B = brute_force_tensor(layer)
    Dp = (
        sae.W_dec.detach()
        if not bias
        else torch.cat([sae.W_dec.detach(), torch.zeros(4 * D, 1, dtype=torch.float64)], 1)
    )
    brute = Dp @ torch.einsum("o,oij->ij", u[1], B) @ Dp.T
    torch.testing.assert_close(A.feature_interactions(factors_of(layer), sae, u[1]), brute, rtol=1e-10, atol=1e-10)


def test_identity_on_cached_bridge_activations() -> None:
    model, _, _ = random_model(vocab=40, d_model=16, d_hidden=24, bias=True)
    tokens = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(
        tokens, names_filter=lambda n: n in ("blocks.1.mlp.hook_in", "blocks.1.mlp.hook_out")
    )
    x = cache["blocks.1.mlp.hook_in"].reshape(-1, 16).double()
    mlp = model.blocks[1].mlp
    sae = random_sae(16, 64, k=8, seed=5)
    u = torch.randn(2, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    factors64 = BilinearFactors.from_mlp(mlp, dtype=torch.float64)
    assert_identity(factors64.forward, mlp, sae, x, u)
    torch.testing.assert_close(
        mlp.feature_interactions(sae, u, dtype=torch.float64),
        A.feature_interactions(mlp, sae, u, dtype=torch.float64),
        rtol=0,
        atol=0,
    )
    eig = mlp.eigendecompose(u[0].float(), k=3)
    projections = A.eigenvector_activations(model, 1, eig.v, tokens, batch_size=1)
    manual = torch.cat([cache["blocks.1.mlp.hook_in"], torch.ones(2, 9, 1)], -1) @ eig.v.T  # bias: x' = [x, 1]
    torch.testing.assert_close(projections, manual)
    with pytest.raises(IndexError, match="layers 0..1"):
        A.eigenvector_activations(model, 2, eig.v, tokens)
    # the cached hook_out is what the factors compute (float32 model)
    torch.testing.assert_close(
        factors64.forward(x).float(), cache["blocks.1.mlp.hook_out"].reshape(-1, 16), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("bias", [False, True])
def test_identity_through_llama_mlp(bias: bool) -> None:
    config = LlamaConfig(
        hidden_size=D,
        intermediate_size=H,
        num_attention_heads=2,
        num_key_value_heads=2,
        hidden_act="linear",
        mlp_bias=bias,
    )
    torch.manual_seed(0)
    module = LlamaMLP(config).double()
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.3)
    sae = random_sae(D, 3 * D, seed=7)
    x = torch.randn(15, D, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    u = torch.randn(2, D, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert_identity(module, module, sae, x, u)
    silu = LlamaMLP(
        LlamaConfig(hidden_size=D, intermediate_size=H, num_attention_heads=2, num_key_value_heads=2, hidden_act="silu")
    )
    with pytest.raises(NotBilinearError, match="a gated MLP with activation 'silu'.*LlamaMLP with hidden_act 'linear'"):
        BilinearFactors.from_mlp(silu)


def test_identity_through_tdooms_mlp_module(checkpoint) -> None:
    folder, _, _ = checkpoint(d_model=16, d_hidden=20, bias=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = hb.load_model(folder).transformer.h[0].mlp.double()
    sae = random_sae(16, 32, k=6, seed=10)
    x = torch.randn(12, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    u = torch.randn(2, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        assert_identity(module, module, sae, x, u)
    folder, _, _ = checkpoint(d_model=16, d_hidden=20, gate="silu", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        glu = hb.load_model(folder).transformer.h[0].mlp
    with pytest.raises(NotBilinearError):
        BilinearFactors.from_mlp(glu)


@pytest.mark.parametrize("bias", [False, True])
def test_output_feature_pre_activation_and_fig9(bias: bool) -> None:
    layer = random_layer(D, H, bias=bias, seed=13)
    factors = factors_of(layer)
    sae_out = random_sae(D, 4 * D, k=10, seed=14)
    x = torch.randn(400, D, dtype=torch.float64, generator=torch.Generator().manual_seed(15))
    y = mlp_forward(layer, x)
    features = (sae_out.encode(y) > 0).sum(0).argsort(descending=True)[:3].tolist()  # often active ones
    eig = A.output_feature_eigen(factors, sae_out, features)  # all eigenpairs
    x_aug = factors.augment(x)
    through_eigen = (eig.lambda_[:, None, :] * (x_aug @ eig.v.mT).square()).sum(-1).T + A.output_feature_offsets(
        sae_out, features
    )
    torch.testing.assert_close(through_eigen, sae_out.pre_activations(y)[:, features], rtol=1e-9, atol=1e-9)
    # Fig. 9: all eigenpairs reproduce the activation exactly where active (TopK: activation = pre-activation there);
    # a rarely active feature first, so it is skipped (NaN) and the others keep their own eigenpairs
    counts = (sae_out.encode(y) > 0).sum(0)
    rare = int(counts.argmin())
    assert counts[rare] <= 10
    chosen = [rare, *features]
    approx = A.eigen_approximation(factors, sae_out, x, chosen, ks=(1, 2, factors.d_in), min_active=10)
    assert approx.n_active[1:].min() > 10 and torch.isnan(approx.correlation[0]).all()
    torch.testing.assert_close(approx.correlation[1:, -1], torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-9)
    acts = sae_out.encode(y)[:, features]
    for row in range(len(features)):  # k=1 against numpy's corrcoef
        active = acts[:, row] > 0
        first = eig.lambda_[row, 0] * (x_aug[active] @ eig.v[row, 0]).square()
        expected = np.corrcoef(first.numpy(), acts[active, row].numpy())[0, 1]
        assert approx.correlation[row + 1, 0].item() == pytest.approx(expected, abs=1e-9)
    sparse = A.eigen_approximation(factors, sae_out, x[:5], features, min_active=10)
    assert torch.isnan(sparse.correlation).all()


def test_rankings_and_interactions() -> None:
    layer = random_layer(D, H, bias=False, seed=16)
    factors = factors_of(layer)
    sae_out = random_sae(D, 16, seed=17)
    sae_in = random_sae(D, 20, seed=18)
    B = brute_force_tensor(layer)
    e = sae_out.W_enc.detach().T
    e = e / e.norm(dim=1, keepdim=True)
    lam = torch.linalg.eigvalsh(torch.einsum("no,oij->nij", e, B))
    top = lam.abs().max(-1).values
    ranking = A.rank_output_features(factors, sae_out)
    assert ranking.features.tolist() == top.argsort(descending=True).tolist()
    torch.testing.assert_close(ranking.score, top.sort(descending=True).values)
    Dd = sae_in.W_dec.detach()
    lam_f = torch.linalg.eigvalsh(Dd @ torch.einsum("no,oij->nij", e, B) @ Dd.T)
    by_outliers = A.rank_output_features(factors, sae_out, sae_in=sae_in, by="outliers")
    counts = A.outlier_count(lam_f)
    assert by_outliers.outliers.tolist() == sorted(counts.tolist(), reverse=True)
    assert A.outlier_count(torch.tensor([0.0, 1, 2, 3, 4, 5, 6, 7, 100, -50])).item() == 2
    M = A.feature_interactions(factors, sae_in, sae_out.W_enc.detach()[:, 0])
    pairs = A.top_interactions(M, k=5, include_self=False)
    brute = sorted(((abs(M[i, j].item()), i, j) for i in range(20) for j in range(i + 1, 20)), reverse=True)[:5]
    assert list(zip(pairs.i.tolist(), pairs.j.tolist())) == [(i, j) for _, i, j in brute]
    diag, cross = A.features.self_and_cross(M)
    assert diag.shape == (20,) and cross.shape == (190,)
    assert A.features.random_symmetric_spectrum(50, 1.0).shape == (50,)


def test_top_examples() -> None:
    tokens = torch.arange(24).reshape(3, 8)
    values = torch.zeros(3, 8)
    values[1, 5], values[2, 0], values[0, 7] = 3.0, 2.0, 1.0
    examples = A.top_examples(None, tokens, values, k=3, context=2, after=1)
    assert [(e.sequence, e.position, e.value) for e in examples] == [(1, 5, 3.0), (2, 0, 2.0), (0, 7, 1.0)]
    assert (examples[0].before, examples[0].token, examples[0].after) == ("11 12", "13", "14")
    assert (examples[1].before, examples[2].after) == ("", "")


def test_bad_input() -> None:
    factors = factors_of(random_layer(D, H, bias=False, seed=19))
    wrong = random_sae(D + 1, 10)
    u = torch.randn(D, dtype=torch.float64)
    with pytest.raises(SAEError, match="size 9.*size 8.*hook_in"):
        A.feature_interactions(factors, wrong, u)
    with pytest.raises(SAEError, match="output SAE.*hook_out"):
        A.output_feature_eigen(factors, wrong, [0])
    with pytest.raises(IndexError, match="feature 10 does not exist.*0..9"):
        A.output_feature_eigen(factors, random_sae(D, 10), [1, 10])
    with pytest.raises(SAEError, match="not an SAE"):
        A.feature_interactions(factors, object(), u)


@pytest.fixture(scope="module")
def shipped_bridge():
    return hb.from_pretrained("ts-synthetic-2l")


def test_an_sae_of_another_layer_or_side_is_refused_naming_both_hooks(shipped_bridge) -> None:
    mlp0 = shipped_bridge.blocks[0].mlp
    in0, in1 = S.load("ts-synthetic-2l/blocks.0.mlp.hook_in"), S.load("ts-synthetic-2l/blocks.1.mlp.hook_in")
    out0 = S.load("ts-synthetic-2l/blocks.0.mlp.hook_out")
    u = torch.randn(mlp0.factors().d_out)
    good = A.feature_interactions(mlp0, in0, u)  # the right pairing works
    with pytest.raises(SAEError, match=r"'blocks\.1\.mlp\.hook_in'.*layer 0's MLP.*blocks\.0\.mlp\.hook_in"):
        A.feature_interactions(mlp0, in1, u)  # another layer
    with pytest.raises(SAEError, match=r"'blocks\.0\.mlp\.hook_out'.*did you swap"):
        A.feature_interactions(mlp0, out0, u)  # the output SAE as the input SAE (the same width)
    with pytest.raises(SAEError, match="blocks.1.mlp.hook_in"):
        mlp0.feature_interactions(in1, u)  # the component method too
    for call in (
        lambda: A.feature_bias_terms(mlp0, in1, u),
        lambda: A.output_feature_eigen(mlp0, in0, [0]),  # an input SAE as the output SAE
        lambda: A.output_feature_eigen(mlp0, S.load("ts-synthetic-2l/blocks.1.mlp.hook_out"), [0]),
        lambda: A.rank_output_features(mlp0, out0, sae_in=in1, features=[0]),
        lambda: A.rank_output_features(mlp0, in0, features=[0]),
        lambda: A.eigen_approximation(mlp0, in0, torch.randn(4, u.shape[0])),
        lambda: A.eigen_approximation(
            mlp0, S.load("ts-synthetic-2l/blocks.1.mlp.hook_out"), torch.randn(4, u.shape[0])
        ),
    ):
        with pytest.raises(SAEError, match="check_hook=False"):
            call()
    # eigen_approximation passes check_hook on: an output SAE named for another layer, vouched for
    out1_named = _renamed(S.load("ts-synthetic-2l/blocks.0.mlp.hook_out"), "blocks.1.mlp.hook_out")
    vouched = A.eigen_approximation(mlp0, out1_named, torch.randn(4, u.shape[0]), [0], ks=(1,), check_hook=False)
    assert vouched.n_active.shape == (1,)
    # the documented override, for SAEs whose hook names are wrong: the same numbers as the right SAE's weights
    torch.testing.assert_close(
        A.feature_interactions(mlp0, _renamed(in0, "blocks.1.mlp.hook_in"), u, check_hook=False), good
    )
    # an SAE that names no hook is not checked; factors (no layer) check the side only
    assert A.feature_interactions(mlp0, _renamed(in0, None), u).shape == good.shape
    factors = mlp0.factors()
    assert A.feature_interactions(factors, in1, u).shape == good.shape
    with pytest.raises(SAEError, match="did you swap"):
        A.feature_interactions(factors, out0, u)


def test_an_sae_at_an_accepted_hook_of_its_layer_passes(shipped_bridge) -> None:
    mlp1 = shipped_bridge.blocks[1].mlp
    sae_in, sae_out = S.load("ts-synthetic-2l/blocks.1.mlp.hook_in"), S.load("ts-synthetic-2l/blocks.1.mlp.hook_out")
    u = torch.randn(mlp1.factors().d_out)
    for name in ("blocks.1.ln2.hook_normalized", "blocks.1.ln2.hook_out"):
        A.feature_interactions(mlp1, _renamed(sae_in, name), u)
    A.output_feature_eigen(mlp1, _renamed(sae_out, "blocks.1.hook_mlp_out"), [0])
    with pytest.raises(SAEError):  # the residual stream before ln2 is not the MLP's input
        A.feature_interactions(mlp1, _renamed(sae_in, "blocks.1.hook_mlp_in"), u)


def test_feature_activations_refuses_a_hook_name_other_than_the_saes(shipped_bridge) -> None:
    sae_in = S.load("ts-synthetic-2l/blocks.1.mlp.hook_in")
    tokens = torch.randint(0, 100, (2, 5))
    with pytest.raises(SAEError, match=r"hook_name='blocks\.0\.mlp\.hook_in'.*'blocks\.1\.mlp\.hook_in'"):
        A.feature_activations(shipped_bridge, sae_in, tokens, hook_name="blocks.0.mlp.hook_in")
    forced = A.feature_activations(shipped_bridge, sae_in, tokens, hook_name="blocks.0.mlp.hook_in", check_hook=False)
    assert forced.shape == (2, 5, sae_in.d_sae)


def _renamed(sae: S.SAE, hook_name: str | None) -> S.SAE:
    """A copy of the SAE whose metadata names another hook (or none)."""
    copy = S.TopKSAE(sae.d_in, sae.d_sae, k=sae.k, metadata={"hook_name": hook_name} if hook_name else {})
    copy.load_state_dict(sae.state_dict())
    return copy


def test_top_examples_ranks_by_value_magnitude_or_contribution_as_brute_force_sorting() -> None:
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 50, (4, 6), generator=g)
    values = torch.randn(4, 6, generator=g, dtype=torch.float64)
    values[2, 3] = -10.0  # the strongest context, on the negative side
    lambda_ = -0.7
    cells = [(s, p) for s in range(4) for p in range(6)]
    expected = {
        "value": sorted(cells, key=lambda c: -values[c].item())[:5],
        "magnitude": sorted(cells, key=lambda c: -abs(values[c].item()))[:5],
        "contribution": sorted(cells, key=lambda c: -abs(lambda_ * values[c].item() ** 2))[:5],
    }
    for rank_by, cells_expected in expected.items():
        options = {"lambda_": lambda_} if rank_by == "contribution" else {}
        examples = A.top_examples(None, tokens, values, k=5, rank_by=rank_by, **options)
        assert [(e.sequence, e.position) for e in examples] == cells_expected, rank_by
        for e in examples:
            raw = values[e.sequence, e.position].item()
            assert e.value == pytest.approx(lambda_ * raw**2 if rank_by == "contribution" else raw)
            assert e.token == str(tokens[e.sequence, e.position].item())
    assert (2, 3) not in expected["value"] and expected["magnitude"][0] == (2, 3)
    with pytest.raises(ValueError, match="needs lambda_"):
        A.top_examples(None, tokens, values, rank_by="contribution")
    with pytest.raises(ValueError, match="take none"):
        A.top_examples(None, tokens, values, lambda_=1.0)


def test_eigenvector_contributions_add_up_to_the_output_direction(shipped_bridge) -> None:
    """The identity eigenvector_activations documents: sum_i lambda_i (v_i . x')^2 = u . mlp(x), per token."""
    layer, tokens = 1, torch.randint(0, 300, (2, 7), generator=torch.Generator().manual_seed(0))
    mlp = shipped_bridge.blocks[layer].mlp
    u = torch.randn(mlp.factors().d_out, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eigen = A.eigendecompose(mlp.factors(torch.float64), u, method="dense")
    projections = A.eigenvector_activations(shipped_bridge, layer, eigen.v, tokens)  # [n_seq, pos, d_in]
    with torch.no_grad():
        _, cache = shipped_bridge.run_with_cache(tokens, names_filter=f"blocks.{layer}.mlp.hook_out")
    expected = cache[f"blocks.{layer}.mlp.hook_out"].double() @ u
    torch.testing.assert_close(
        (eigen.lambda_ * projections.square()).sum(-1), expected, rtol=1e-4, atol=1e-4
    )  # float32 model


def _old_spectra(factors: BilinearFactors, sae_out, sae_in, features: list[int]) -> torch.Tensor:
    """The reference: eigvalsh of every n x n D Q_e D^T (the package's path before issue 27)."""
    D, _ = A.features.input_basis(factors, sae_in)
    u = A.output_feature_directions(sae_out, features).to(factors.dtype)
    u = u / u.norm(dim=-1, keepdim=True)
    return torch.linalg.eigvalsh(D @ A.interaction_matrix(factors, u) @ D.T)


def test_rank_output_features_ranks_the_shipped_model_as_the_n_by_n_eigensolver(shipped_bridge) -> None:
    mlp = shipped_bridge.blocks[1].mlp
    sae_in, sae_out = S.load("ts-synthetic-2l/blocks.1.mlp.hook_in"), S.load("ts-synthetic-2l/blocks.1.mlp.hook_out")
    features = list(range(0, 512, 8))  # 64 of the 512: the reference takes ~30 ms per feature
    lam = _old_spectra(mlp.factors(), sae_out, sae_in, features)
    top = torch.gather(lam, 1, lam.abs().argmax(-1, keepdim=True))[:, 0]
    order = top.abs().argsort(descending=True, stable=True)
    ranking = A.rank_output_features(mlp, sae_out, sae_in=sae_in, features=features, progress=False)
    assert ranking.features.tolist() == [features[i] for i in order.tolist()]
    torch.testing.assert_close(ranking.top_eigenvalue, top[order], rtol=1e-4, atol=1e-6)
    # float64: the whole spectrum, and the outlier ranking of the exact spectrum (rounding noise around 0 set to 0)
    lam64 = _old_spectra(mlp.factors(torch.float64), sae_out, sae_in, features)
    lam64 = torch.where(lam64.abs() < 1e-9 * lam64.abs().max(), torch.zeros_like(lam64), lam64)
    by_outliers = A.rank_output_features(
        mlp, sae_out, sae_in=sae_in, features=features, by="outliers", dtype=torch.float64, progress=False
    )
    counts = A.outlier_count(lam64)
    top64 = torch.gather(lam64, 1, lam64.abs().argmax(-1, keepdim=True))[:, 0].abs()
    score = counts.double() + top64 / (top64.max() + 1)
    assert by_outliers.features.tolist() == [features[i] for i in score.argsort(descending=True, stable=True).tolist()]
    assert by_outliers.outliers.tolist() == counts[score.argsort(descending=True, stable=True)].tolist()


@pytest.mark.parametrize("whisker", [1.5, 0.5])
def test_outlier_count_is_tukeys_fences(whisker):
    """Against the fences computed by Python's statistics module (inclusive quartiles), row by row."""
    g = torch.Generator().manual_seed(0)
    spectra = torch.randn(2, 3, 11, generator=g, dtype=torch.float64) ** 3  # heavy tails: some outliers
    counts = A.outlier_count(spectra, whisker=whisker)
    assert counts.shape == (6,)
    for row, count in zip(spectra.reshape(6, 11).tolist(), counts.tolist(), strict=True):
        q1, _, q3 = statistics.quantiles(row, n=4, method="inclusive")
        low, high = q1 - whisker * (q3 - q1), q3 + whisker * (q3 - q1)
        assert count == sum(value < low or value > high for value in row)
    assert A.outlier_count(torch.arange(11.0)).tolist() == [0]  # an even spread has none, even on the fences


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("k", [1, 4, 100])
def test_top_interactions_are_the_largest_entries_of_the_triangle(include_self, k):
    g = torch.Generator().manual_seed(1)
    M = torch.randn(5, 5, generator=g, dtype=torch.float64)
    M = M + M.T
    pairs = A.top_interactions(M, k=k, include_self=include_self)
    entries = [(i, j, M[i, j].item()) for i in range(5) for j in range(5) if i < j or (include_self and i == j)]
    entries.sort(key=lambda e: -abs(e[2]))
    expected = entries[:k]
    assert list(zip(pairs.i.tolist(), pairs.j.tolist(), pairs.value.tolist(), strict=True)) == expected


def test_top_interactions_refuses_bad_input():
    with pytest.raises(ValueError, match=r"^k=0: pass the number of entries to return, at least 1\.$"):
        A.top_interactions(torch.eye(3), k=0)
    for bad in (torch.ones(3, 4), torch.ones(3)):
        with pytest.raises(ValueError, match=r"^interactions must be a square matrix \[d_sae, d_sae\], got \("):
            A.top_interactions(bad)


def test_self_and_cross_split_a_batch_of_matrices():
    M = torch.arange(2 * 4 * 4, dtype=torch.float64).reshape(2, 4, 4)
    diag, cross = A.features.self_and_cross(M)
    for b in range(2):
        assert diag[b].tolist() == [M[b, i, i].item() for i in range(4)]
        assert cross[b].tolist() == [M[b, i, j].item() for i in range(4) for j in range(i + 1, 4)]


def test_random_symmetric_spectrum_is_the_goe_bulk_of_the_scale_given():
    """Entries of standard deviation `scale` off the diagonal: the spectrum's second moment is about size * scale^2
    and its edge about 2 scale sqrt(size) (Wigner's semicircle); linear in scale, fixed by the seed."""
    size, scale = 400, 0.5
    lam = A.features.random_symmetric_spectrum(size, scale, seed=3)
    assert lam.shape == (size,) and (lam.diff() >= 0).all()
    assert lam.square().mean().item() == pytest.approx(size * scale**2, rel=0.05)
    assert lam[-1].item() == pytest.approx(2 * scale * size**0.5, rel=0.05)
    torch.testing.assert_close(A.features.random_symmetric_spectrum(size, 1.0, seed=3) * scale, lam)
    assert not torch.equal(A.features.random_symmetric_spectrum(size, scale, seed=4), lam)
    torch.testing.assert_close(
        A.features.random_symmetric_spectrum(size, scale), A.features.random_symmetric_spectrum(size, scale, seed=0)
    )


def test_pearson_is_the_correlation_coefficient():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    b = b + a
    assert A.features._pearson(a, b) == pytest.approx(torch.corrcoef(torch.stack([a, b]))[0, 1].item(), abs=1e-12)
    assert A.features._pearson(a + 3.0, 2 * b - 1) == pytest.approx(A.features._pearson(a, b), abs=1e-12)
    assert math.isnan(A.features._pearson(torch.ones(5), a[:5]))


def brute_force_spectra(layer: dict, sae_out, sae_in=None) -> torch.Tensor:
    """Eigenvalues of Q_{e_j} (unit e_j), or of the n x n D Q_{e_j} D^T, from the explicit tensor B; rounding
    noise around the exact zeros of a rank-deficient D Q D^T set to 0."""
    e = sae_out.W_enc.detach().T
    Q = torch.einsum("no,oij->nij", e / e.norm(dim=1, keepdim=True), brute_force_tensor(layer))
    if sae_in is not None:
        Q = sae_in.W_dec.detach() @ Q @ sae_in.W_dec.detach().T
    lam = torch.linalg.eigvalsh(Q)
    return torch.where(lam.abs() < 1e-9, torch.zeros_like(lam), lam)


@pytest.mark.parametrize("by", ["top_eigenvalue", "outliers"])
def test_rank_output_features_in_batches_with_a_wide_input_sae(capsys, by):
    """70 output features (two batches of 64) through an input SAE of 20 features over 8 inputs (so 12 exact zeros
    per spectrum): top |lambda| and outlier counts those of the n x n eigensolver, with a progress bar by default."""
    layer = random_layer(D, H, bias=False, seed=21)
    sae_out, sae_in = random_sae(D, 70, seed=22), random_sae(D, 20, seed=23)
    lam = brute_force_spectra(layer, sae_out, sae_in)
    top = torch.gather(lam, 1, lam.abs().argmax(-1, keepdim=True))[:, 0]
    outliers = A.outlier_count(lam)
    ranking = A.rank_output_features(factors_of(layer), sae_out, sae_in=sae_in, by=by)
    assert "output-feature spectra: " in capsys.readouterr().err
    ids = ranking.features
    assert sorted(ids.tolist()) == list(range(70))
    torch.testing.assert_close(ranking.top_eigenvalue, top[ids], atol=1e-10, rtol=1e-9)
    assert ranking.outliers.tolist() == outliers[ids].tolist()
    expected_score = top.abs() if by == "top_eigenvalue" else outliers + top.abs() / (top.abs().max() + 1)
    torch.testing.assert_close(ranking.score, expected_score[ids].double(), atol=1e-10, rtol=1e-9)
    assert (ranking.score.diff() <= 0).all()
    A.rank_output_features(factors_of(layer), sae_out, features=[3], progress=False)
    assert capsys.readouterr().err == ""


def test_rank_output_features_options():
    layer = random_layer(D, H, bias=False, seed=24)
    sae_out = random_sae(D, 6, seed=25)
    lam = brute_force_spectra(layer, sae_out)
    ranking = A.rank_output_features(factors_of(layer), sae_out, features=[4, 1], dtype=torch.float32, progress=False)
    assert ranking.score.dtype == torch.float32 and sorted(ranking.features.tolist()) == [1, 4]
    torch.testing.assert_close(ranking.score, lam[ranking.features].abs().max(-1).values.float())
    with pytest.raises(ValueError, match=r"^by must be 'top_eigenvalue' or 'outliers', got 'size'\.$"):
        A.rank_output_features(factors_of(layer), sae_out, by="size")


def test_output_feature_offsets_subtract_b_dec_only_when_the_sae_does():
    sae = random_sae(D, 6, seed=26)
    W_enc, b_enc, b_dec = sae.W_enc, sae.b_enc, sae.b_dec
    expected = torch.stack([b_enc[j] - sum(b_dec[i] * W_enc[i, j] for i in range(D)) for j in (2, 5)])
    torch.testing.assert_close(A.features.output_feature_offsets(sae, [2, 5]), expected)
    plain = SimpleNamespace(W_enc=W_enc, W_dec=sae.W_dec, b_enc=b_enc, b_dec=b_dec, apply_b_dec_to_input=False)
    torch.testing.assert_close(A.features.output_feature_offsets(plain, [2, 5]), b_enc[[2, 5]])
    unsaid = SimpleNamespace(W_enc=W_enc, W_dec=sae.W_dec, b_enc=b_enc, b_dec=b_dec)  # SAELens' default: subtract
    torch.testing.assert_close(A.features.output_feature_offsets(unsaid, [2, 5]), expected)


def test_the_documented_defaults_of_the_spectrum_helpers():
    """outlier_count's whisker 1.5 (Tukey's), top_interactions' 10 entries with the diagonal."""
    spectra = torch.randn(40, 11, generator=torch.Generator().manual_seed(5), dtype=torch.float64) ** 3
    torch.testing.assert_close(A.outlier_count(spectra), A.outlier_count(spectra, whisker=1.5))
    assert not torch.equal(A.outlier_count(spectra, whisker=1.5), A.outlier_count(spectra, whisker=2.5))
    M = torch.diag(torch.arange(1.0, 7.0)) * 10 + 0.01  # the diagonal dominates
    default = A.top_interactions(M)
    explicit = A.top_interactions(M, k=10, include_self=True)
    assert len(default.i) == 10 and default.i.tolist() == explicit.i.tolist()
    assert default.j.tolist() == explicit.j.tolist()


def namespace_sae(d_in: int, d_sae: int, **extra) -> SimpleNamespace:
    return SimpleNamespace(
        W_enc=torch.ones(d_in, d_sae),
        W_dec=torch.ones(d_sae, d_in),
        b_enc=torch.ones(d_sae),
        b_dec=torch.ones(d_in),
        **extra,
    )


def test_sae_tensors_refuse_what_is_not_a_consistent_sae():
    with pytest.raises(SAEError) as refused:
        A.features.sae_tensors(SimpleNamespace(W_enc=torch.ones(2, 3)))
    assert str(refused.value) == (
        "SimpleNamespace is not an SAE: it needs tensors W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc [d_sae] "
        "and b_dec [d_in] (hooked_bilinear.sae.load gives one)."
    )
    for name, shape in (("W_dec", (3, 3)), ("b_enc", (2,)), ("b_dec", (3,))):
        sae = namespace_sae(2, 3)
        setattr(sae, name, torch.ones(shape))
        with pytest.raises(SAEError) as refused:
            A.features.sae_tensors(sae)
        shapes = {"W_dec": (3, 2), "b_enc": (3,), "b_dec": (2,)} | {name: shape}
        assert str(refused.value) == (
            f"inconsistent SAE shapes: W_enc (2, 3), W_dec {shapes['W_dec']}, b_enc {shapes['b_enc']}, b_dec "
            f"{shapes['b_dec']} (SAELens orientation: W_enc [d_in, d_sae])."
        )


def test_an_sae_must_have_the_width_of_its_side():
    """The input side is d_model wide (not the augmented d_in), the output side d_out: here 8 and 5."""
    g = torch.Generator().manual_seed(0)
    factors = BilinearFactors.from_weights(
        torch.randn(8, 6, generator=g),
        torch.randn(8, 6, generator=g),
        torch.randn(6, 5, generator=g),
        b_out=torch.randn(5, generator=g),
    )
    A.features._check_width(namespace_sae(8, 4), factors, "input")
    A.features._check_width(namespace_sae(5, 4), factors, "output")
    with pytest.raises(SAEError) as refused:
        A.features._check_width(namespace_sae(5, 4, hook_name="blocks.0.mlp.hook_out"), factors, "input")
    assert str(refused.value) == (
        "the input SAE (hook blocks.0.mlp.hook_out) reads vectors of size 5, but this MLP's input has size 8: use an "
        "SAE trained on the MLP's input (blocks.{l}.mlp.hook_in)."
    )
    with pytest.raises(SAEError) as refused:
        A.features._check_width(namespace_sae(8, 4), factors, "output")
    assert str(refused.value) == (
        "the output SAE reads vectors of size 8, but this MLP's output has size 5: use an SAE trained on the MLP's "
        "output (blocks.{l}.mlp.hook_out)."
    )


@pytest.mark.parametrize(
    "sae, hook",
    [
        (SimpleNamespace(hook_name="a"), "a"),
        (SimpleNamespace(hook_name="", cfg=SimpleNamespace(metadata=SimpleNamespace(hook_name="b"))), "b"),
        (SimpleNamespace(cfg=SimpleNamespace(metadata=None, hook_name="c")), "c"),
        (SimpleNamespace(hook_name=3, cfg=SimpleNamespace(hook_name="")), None),
        (SimpleNamespace(), None),
    ],
)
def test_the_hook_an_sae_says_it_reads(sae, hook):
    """`sae.hook_name`, else SAELens's `cfg.metadata.hook_name`, else `cfg.hook_name`; empty or non-text is no name."""
    assert A.features.sae_hook_name(sae) == hook


def _fig9_by_hand(factors, sae_out, x, ids, activations, ks) -> torch.Tensor:
    """Fig. 9 written out: over the inputs where each feature is active (> 0), numpy's Pearson correlation of the
    sum of the top-k eigencomponents lambda_i (v_i . x')^2 with the activation."""
    eig = A.output_feature_eigen(factors, sae_out, ids)  # every eigenpair, strongest first
    x_aug = factors.augment(x)
    out = torch.full((len(ids), len(ks)), float("nan"), dtype=torch.float64)
    for row in range(len(ids)):
        active = activations[:, row] > 0
        terms = eig.lambda_[row] * (x_aug[active] @ eig.v[row].T).square()
        for column, k in enumerate(ks):
            approx = terms[:, :k].sum(-1).numpy()
            out[row, column] = float(np.corrcoef(approx, activations[active, row].double().numpy())[0, 1])
    return out


def test_eigen_approximation_counts_active_inputs_and_skips_features_active_on_min_active_or_fewer() -> None:
    """Given activations: a feature is counted when active (> 0, not >= 0, whatever its size) on more than min_active
    (default 10) inputs: 11 of them counts, 10 does not (NaN); negative and zero activations are inactive; a lone
    counted feature is computed too; every returned field is the one given; the work is done in float64 by default
    (a float32 layer gives the float64 layer's correlations); ks outside 1..d_in and activations of another shape
    are refused with the exact messages."""
    layer = random_layer(D, H, bias=False, seed=21)
    factors = factors_of(layer)
    sae_out = random_sae(D, 16, seed=22)
    g = torch.Generator().manual_seed(23)
    x = torch.randn(30, D, dtype=torch.float64, generator=g)
    acts = torch.zeros(30, 3, dtype=torch.float64)
    acts[:11, 0] = 0.2 + 0.7 * torch.rand(11, generator=g, dtype=torch.float64)  # 11 active, all below 1
    acts[:10, 1] = 1 + torch.rand(10, generator=g, dtype=torch.float64)  # 10 active: not counted
    acts[5:20, 2] = 0.5 + torch.rand(15, generator=g, dtype=torch.float64)  # 15 active,
    acts[20:25, 2] = -0.5  # 5 negative, 10 zero: inactive
    ids, ks = [3, 7, 9], (1, 2, factors.d_in)
    approx = A.eigen_approximation(factors, sae_out, x, ids, ks=ks, activations=acts)
    assert approx.features.tolist() == ids and approx.ks == ks and approx.n_active.tolist() == [11, 10, 15]
    expected = _fig9_by_hand(factors, sae_out, x, ids, acts, ks)
    assert torch.isnan(approx.correlation[1]).all()
    torch.testing.assert_close(approx.correlation[[0, 2]], expected[[0, 2]], rtol=0, atol=1e-9)
    alone = A.eigen_approximation(factors, sae_out, x, ids[:1], ks=ks, activations=acts[:, :1])
    torch.testing.assert_close(alone.correlation, expected[:1], rtol=0, atol=1e-9)
    none = A.eigen_approximation(factors, sae_out, x, ids, ks=ks, activations=acts, min_active=15)
    assert torch.isnan(none.correlation).all() and none.features.tolist() == ids and none.ks == ks
    assert none.n_active.tolist() == [11, 10, 15]
    single = factors_of(random_layer(D, H, bias=False, seed=21, dtype=torch.float32))
    in_float64 = factors_of(random_layer(D, H, bias=False, seed=21, dtype=torch.float32), dtype=torch.float64)
    torch.testing.assert_close(
        A.eigen_approximation(single, sae_out, x, ids, ks=ks, activations=acts).correlation,
        A.eigen_approximation(in_float64, sae_out, x, ids, ks=ks, activations=acts).correlation,
        rtol=0,
        atol=1e-12,
        equal_nan=True,
    )
    for bad in ((), (0,), (factors.d_in + 1,), (1, factors.d_in + 1)):
        with pytest.raises(ValueError) as refused:
            A.eigen_approximation(factors, sae_out, x, ids, ks=bad, activations=acts)
        assert str(refused.value) == f"ks must lie in 1..{factors.d_in}, got {bad}."
    with pytest.raises(ValueError) as refused:
        A.eigen_approximation(factors, sae_out, x, ids, activations=acts[:29])
    assert str(refused.value) == "activations must be [n_inputs=30, n_features=3], got (29, 3)."


def test_eigen_approximation_encodes_with_an_sae_of_another_dtype() -> None:
    """Without activations, the MLP's output is cast to the SAE's dtype before encoding (a float32 SAE on a float64
    layer, this package's and an SAE-like object whose encode does not cast): the active counts are the SAE's own on
    that output."""
    layer = random_layer(D, H, bias=False, seed=24)
    factors = factors_of(layer)
    sae_out = random_sae(D, 16, seed=25, dtype=torch.float32)
    x = torch.randn(40, D, dtype=torch.float64, generator=torch.Generator().manual_seed(26))
    approx = A.eigen_approximation(factors, sae_out, x, [0, 1, 2], ks=(1,))
    expected = (sae_out.encode(mlp_forward(layer, x).float())[:, :3] > 0).sum(0)
    assert approx.n_active.tolist() == expected.tolist()
    # an SAE-like object whose encode does not cast (a plain float32 ReLU encoder): given float32 all the same
    bare = SimpleNamespace(**{name: getattr(sae_out, name).detach() for name in ("W_enc", "W_dec", "b_enc", "b_dec")})
    bare.encode = lambda y: torch.relu(y @ bare.W_enc + bare.b_enc)
    plain = A.eigen_approximation(factors, bare, x, [0, 1, 2], ks=(1,))
    assert plain.n_active.tolist() == (bare.encode(mlp_forward(layer, x).float())[:, :3] > 0).sum(0).tolist()


class _Tokens:
    """A stand-in tokenizer: token i is 't<i>'."""

    @staticmethod
    def convert_ids_to_tokens(ids: list[int]) -> list[str]:
        return [f"t{i}" for i in ids]


def test_top_examples_defaults_limits_messages_and_tokenizers() -> None:
    """Defaults: 10 examples by value (not magnitude), 8 tokens before, 2 after; k = 1, context = 0 and after = 0
    accepted, k = 0 or a negative context or after (each alone) refused, shapes refused, each with its exact message;
    a tokenizer, or a model holding one as `.tokenizer`, shows token strings; a context reaching the start of the
    sequence shows it from token 0."""
    tokens = torch.arange(60).reshape(3, 20)
    values = torch.linspace(-1, 1, 60).reshape(3, 20)
    values[0, 3] = -50.0  # the largest magnitude, the smallest value
    default = A.top_examples(None, tokens, values)
    assert default == A.top_examples(None, tokens, values, k=10, context=8, after=2, rank_by="value")
    assert len(default) == 10 and (default[0].sequence, default[0].position) == (2, 19)
    assert all(example.value > 0 for example in default)
    assert (default[1].before, default[1].token, default[1].after) == (" ".join(map(str, range(50, 58))), "58", "59")
    one = A.top_examples(None, tokens, values, k=1, context=0, after=0)
    assert [(e.before, e.token, e.after) for e in one] == [("", "59", "")]
    start = A.top_examples(None, tokens, values, k=1, rank_by="magnitude")  # position 3: tokens 0 to 2 before
    assert (start[0].before, start[0].token, start[0].after, start[0].value) == ("0 1 2", "3", "4 5", -50.0)
    for named in (_Tokens(), SimpleNamespace(tokenizer=_Tokens())):
        shown = A.top_examples(named, tokens, values, k=1, context=2, after=1)
        assert (shown[0].before, shown[0].token, shown[0].after) == ("t57 t58", "t59", "")
    for k, context, after in ((0, 8, 2), (1, -1, 0), (1, 0, -1)):
        with pytest.raises(ValueError) as refused:
            A.top_examples(None, tokens, values, k=k, context=context, after=after)
        message = f"k must be at least 1, context and after at least 0; got k={k}, context={context}, after={after}."
        assert str(refused.value) == message
    for bad_tokens, bad_values in ((tokens[:, :19], values), (tokens.reshape(-1), values.reshape(-1))):
        with pytest.raises(ValueError) as refused:
            A.top_examples(None, bad_tokens, bad_values)
        shapes = f"{tuple(bad_tokens.shape)} and {tuple(bad_values.shape)}"
        assert str(refused.value) == f"tokens and values must both be [n_seq, pos]; got {shapes}."
    with pytest.raises(ValueError) as refused:
        A.top_examples(None, tokens, values, lambda_=2.0)
    assert str(refused.value) == (
        "rank_by='value' with lambda_=2.0: rank_by='contribution' needs lambda_ (the eigenvalue), "
        "and the other rankings take none."
    )


WHY_NOT = (
    " Pass the SAE trained on that hook; or, if the SAE's hook_name is wrong (it names another model's hooks, say), "
    "check_hook=False, vouching for the pairing yourself."
)


def test_check_sae_hook_messages_name_the_hooks_wanted_and_the_swap(shipped_bridge) -> None:
    """The exact refusals: factors (no layer) name the hooks with {l}; a layer's MLP names its own; the swap hint only
    when the SAE reads the other side; the check is on by default and check_hook=False skips it (here and through
    output_feature_eigen and feature_bias_terms, which pass it on)."""
    mlp0 = shipped_bridge.blocks[0].mlp
    out0 = S.load("ts-synthetic-2l/blocks.0.mlp.hook_out")
    in1 = S.load("ts-synthetic-2l/blocks.1.mlp.hook_in")
    expected = {
        (True, "input", "out0"): "the input SAE reads 'blocks.0.mlp.hook_out', but it is used as the input SAE of an "
        "MLP, whose input is blocks.{l}.mlp.hook_in or blocks.{l}.ln2.hook_normalized or blocks.{l}.ln2.hook_out. It "
        "reads the MLP's output: did you swap the input and output SAEs?",
        (False, "input", "in1"): "the input SAE reads 'blocks.1.mlp.hook_in', but it is used as the input SAE of layer "
        "0's MLP, whose input is blocks.0.mlp.hook_in or blocks.0.ln2.hook_normalized or blocks.0.ln2.hook_out.",
        (False, "output", "in1"): "the output SAE reads 'blocks.1.mlp.hook_in', but it is used as the output SAE of "
        "layer 0's MLP, whose output is blocks.0.mlp.hook_out or blocks.0.hook_mlp_out. It reads the MLP's input: did "
        "you swap the input and output SAEs?",
    }
    saes = {"out0": out0, "in1": in1}
    for (as_factors, side, which), message in expected.items():
        mlp = mlp0.factors() if as_factors else mlp0
        with pytest.raises(SAEError) as refused:
            A.features.check_sae_hook(mlp, saes[which], side)
        assert str(refused.value) == message + WHY_NOT
        A.features.check_sae_hook(mlp, saes[which], side, check_hook=False)
    u = torch.randn(mlp0.factors().d_out, dtype=torch.float64)
    vouched_in = _renamed(S.load("ts-synthetic-2l/blocks.0.mlp.hook_in"), "blocks.1.mlp.hook_in")
    assert A.feature_bias_terms(mlp0, vouched_in, u, check_hook=False).linear.shape[-1] == vouched_in.d_sae
    vouched_out = _renamed(out0, "blocks.1.mlp.hook_out")
    assert A.output_feature_eigen(mlp0, vouched_out, [0], k=2, check_hook=False).lambda_.shape == (1, 2)
    for sae_out, sae_in in ((vouched_out, None), (out0, vouched_in)):  # each SAE's check skipped
        ranked = A.rank_output_features(mlp0, sae_out, sae_in=sae_in, features=[0], check_hook=False, progress=False)
        assert ranked.features.tolist() == [0]
    with pytest.raises(SAEError, match=r"reads 'blocks\.1\.mlp\.hook_out'.*layer 0's MLP"):
        A.rank_output_features(mlp0, S.load("ts-synthetic-2l/blocks.1.mlp.hook_out"), features=[0], progress=False)


def test_output_feature_eigen_passes_k_dtype_and_options_on() -> None:
    """k eigenpairs per feature (not all d_in), in the dtype asked for (a float32 layer in float64 gives the float64
    layer's pairs), directions of a float32 SAE cast to the factors' dtype, and the solver's options passed on (an
    unknown method is the solver's error)."""
    single = factors_of(random_layer(D, H, bias=True, seed=27, dtype=torch.float32))
    double = factors_of(random_layer(D, H, bias=True, seed=27, dtype=torch.float32), dtype=torch.float64)
    sae_out = random_sae(D, 16, seed=28)
    eig = A.output_feature_eigen(single, sae_out, [1, 4], k=2, dtype=torch.float64)
    assert eig.lambda_.shape == (2, 2) and eig.lambda_.dtype == torch.float64
    reference = A.output_feature_eigen(double, sae_out, [1, 4], k=2)
    torch.testing.assert_close(eig.lambda_, reference.lambda_, rtol=1e-12, atol=1e-12)
    sae32 = random_sae(D, 16, seed=28, dtype=torch.float32)
    from32 = A.output_feature_eigen(double, sae32, [1, 4], k=2)
    assert from32.lambda_.dtype == torch.float64
    with pytest.raises(ValueError, match="method"):
        A.output_feature_eigen(double, sae_out, [1], k=2, method="no such method")


def test_feature_ids_are_refused_by_type_and_range_naming_the_first_bad_one() -> None:
    sae = random_sae(D, 10)
    assert A.features.feature_indices(sae, [0, 9]).tolist() == [0, 9]
    with pytest.raises(IndexError) as refused:
        A.features.feature_indices(sae, [0, 10])
    assert str(refused.value) == "feature 10 does not exist: the SAE has features 0..9."
    for bad in ([0.0, 1.0], [True, False]):
        with pytest.raises(TypeError) as refused:
            A.features.feature_indices(sae, torch.tensor(bad))
        assert str(refused.value) == f"features must be integer ids, got dtype {torch.tensor(bad).dtype}."


def test_input_basis_casts_a_float32_sae_to_the_factors_dtype() -> None:
    """Decoder rows and b_dec in the factors' dtype (float64 here, from a float32 SAE), with the augmented column."""
    factors = factors_of(random_layer(D, H, bias=True, seed=29))
    sae32 = random_sae(D, 10, seed=30, dtype=torch.float32)
    rows, b = A.features.input_basis(factors, sae32)
    assert rows.dtype == b.dtype == torch.float64 and rows.shape == (10, factors.d_in)
    torch.testing.assert_close(rows[:, :D], sae32.W_dec.double(), rtol=0, atol=0)
    assert b[-1].item() == 1.0 and (rows[:, -1] == 0).all()


def test_activations_over_token_sequences(shipped_bridge) -> None:
    """hook_activations covers every sequence in batches of any size (more sequences than positions); feature
    activations read the SAE's own hook by default and keep the features asked for; eigenvector projections of one
    eigenvector or k are hook_in's (augmented) projections, in the eigenvector's dtype; exact refusals for a hook the
    model lacks, tokens outside the vocabulary, an SAE that names no hook, a hook_name other than the SAE's,
    eigenvectors of the wrong size, rank or dtype (integers)."""
    model = shipped_bridge
    tokens = torch.randint(0, model.cfg.d_vocab, (5, 3), generator=torch.Generator().manual_seed(31))
    name = "blocks.1.mlp.hook_in"
    whole = A.features.hook_activations(model, tokens, name, batch_size=5)
    assert whole.shape == (5, 3, model.cfg.d_model)
    torch.testing.assert_close(A.features.hook_activations(model, tokens, name, batch_size=2), whole)
    sae_in = S.load("ts-synthetic-2l/blocks.1.mlp.hook_in")
    every = A.feature_activations(model, sae_in, tokens)
    torch.testing.assert_close(every, sae_in.encode(whole))
    torch.testing.assert_close(A.feature_activations(model, sae_in, tokens, features=[2, 5]), every[..., [2, 5]])
    with pytest.raises(SAEError) as refused:
        A.features.hook_activations(model, tokens, "blocks.9.nothing")
    assert str(refused.value) == "the model has no hook 'blocks.9.nothing'."
    with pytest.raises(ValueError, match=r"^tokens must lie in \[0, "):
        A.features.hook_activations(model, tokens + model.cfg.d_vocab, name)
    with pytest.raises(SAEError) as refused:
        A.feature_activations(model, _renamed(sae_in, None), tokens)
    assert str(refused.value) == "this SAE does not say which hook it reads (metadata hook_name): pass hook_name=."
    with pytest.raises(SAEError) as refused:
        A.feature_activations(model, sae_in, tokens, hook_name="blocks.0.mlp.hook_in")
    assert str(refused.value) == (
        "hook_name='blocks.0.mlp.hook_in', but the SAE reads 'blocks.1.mlp.hook_in': leave hook_name out, or pass "
        "check_hook=False to encode another hook's activations on purpose."
    )
    d_in = model.blocks[1].mlp.factors().d_in
    v = torch.randn(2, d_in, dtype=torch.float64, generator=torch.Generator().manual_seed(32))
    two = A.eigenvector_activations(model, 1, v, tokens)
    expected = A.BilinearFactors.from_mlp(model.blocks[1].mlp, dtype=torch.float64).augment(whole) @ v.T
    torch.testing.assert_close(two, expected)
    torch.testing.assert_close(A.eigenvector_activations(model, 1, v[0], tokens), expected[..., 0])
    for bad in (torch.randn(2, d_in + 1, dtype=torch.float64), torch.randn(1, 2, d_in, dtype=torch.float64)):
        with pytest.raises(ValueError) as refused:
            A.eigenvector_activations(model, 1, bad, tokens)
        assert str(refused.value) == f"eigenvectors must be [d_in={d_in}] or [k, {d_in}], got {tuple(bad.shape)}."
    with pytest.raises(TypeError) as refused:
        A.eigenvector_activations(model, 1, torch.ones(d_in, dtype=torch.long), tokens)
    assert str(refused.value) == "eigenvectors must be floating-point, got dtype torch.int64."
    single = A.eigenvector_activations(model, 1, v[0].float(), tokens)  # in the eigenvector's dtype
    assert single.dtype == torch.float32
    torch.testing.assert_close(single, expected[..., 0].float(), rtol=1e-4, atol=1e-4)


def test_psd_sqrt_squares_back_to_the_matrix_with_small_and_zero_eigenvalues() -> None:
    """R = G^(1/2) is symmetric and R R = G for a rank-deficient G whose nonzero eigenvalues are below 1 (a clamp
    that lifted them, or the rounding-negative ones, to anything but 0 would not square back)."""
    B = 0.1 * torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(33))
    G = B @ B.T  # rank 4 of 6: two zero eigenvalues, rounding may make them slightly negative
    R = A.features._psd_sqrt(G)
    torch.testing.assert_close(R, R.T, rtol=0, atol=1e-15)
    torch.testing.assert_close(R @ R, G, rtol=0, atol=1e-12)
    assert torch.linalg.eigvalsh(G).max() < 1


def test_random_symmetric_spectrum_has_the_goe_diagonal():
    """The diagonal of a GOE matrix has twice the off-diagonal variance: over 40 seeds, the trace (the sum of the
    eigenvalues) has mean square about 2 size scale^2, not 0 (as an antisymmetric draw would give)."""
    size, scale = 20, 0.5
    traces = torch.tensor([A.features.random_symmetric_spectrum(size, scale, seed=s).sum() for s in range(40)])
    assert traces.square().mean().item() == pytest.approx(2 * size * scale**2, rel=0.5)


def test_rank_output_features_with_a_narrow_input_sae_a_float32_sae_and_a_wrong_width():
    """An input SAE narrower than the layer (5 features over 8 inputs) gives the spectra of the 5 x 5 D Q D^T, none
    gives Q's own 8 eigenvalues, no zero added, one just wider (10 over 8) its 8 eigenvalues and exactly 2 zeros,
    which move the quartiles, and one much wider (40 over 8) 32 exact zeros, where an n x n eigensolver's rounding
    noise would set the quartiles and count some of itself as outliers (top |lambda| and outlier counts of the
    brute-force spectra, their noise zeroed); a float32 output SAE
    ranks as its float64 copy; an output SAE of the wrong width is refused naming the output side."""
    layer = random_layer(D, H, bias=False, seed=34)
    factors = factors_of(layer)
    sae_out = random_sae(D, 24, seed=35)
    for sae_in in (random_sae(D, 5, seed=36), None, random_sae(D, 10, seed=37), random_sae(D, 40, seed=40)):
        lam = brute_force_spectra(layer, sae_out, sae_in)
        assert lam.shape[-1] == (D if sae_in is None else sae_in.d_sae)
        top = torch.gather(lam, 1, lam.abs().argmax(-1, keepdim=True))[:, 0]
        ranking = A.rank_output_features(factors, sae_out, sae_in=sae_in, by="outliers", progress=False)
        ids = ranking.features
        torch.testing.assert_close(ranking.top_eigenvalue, top[ids], atol=1e-10, rtol=1e-9)
        assert ranking.outliers.tolist() == A.outlier_count(lam)[ids].tolist()
    sae32 = random_sae(D, 24, seed=35, dtype=torch.float32)
    copy = S.TopKSAE(D, 24, k=5, dtype=torch.float64)
    copy.load_state_dict({name: value.double() for name, value in sae32.state_dict().items()})
    single = A.rank_output_features(factors, sae32, progress=False)
    assert single.top_eigenvalue.dtype == torch.float64
    torch.testing.assert_close(
        single.top_eigenvalue, A.rank_output_features(factors, copy, progress=False).top_eigenvalue
    )
    with pytest.raises(SAEError, match=r"^the output SAE.* size 9, but this MLP's output has size 8: .*hook_out\)\.$"):
        A.rank_output_features(factors, random_sae(D + 1, 10))


def test_rank_output_features_keeps_tied_features_in_id_order():
    """48 output features in 12 groups of 4 with the same encoder row (so the same score, bit for bit): each group
    ranks in increasing feature id, whatever the sort's implementation does with ties (a stable sort)."""
    layer = random_layer(D, H, bias=False, seed=38)
    sae_out = random_sae(D, 48, seed=39)
    with torch.no_grad():
        sae_out.W_enc.copy_(sae_out.W_enc[:, torch.arange(48) % 12])
    for by in ("top_eigenvalue", "outliers"):
        ranking = A.rank_output_features(factors_of(layer), sae_out, by=by, progress=False)
        groups = ranking.features.reshape(12, 4)
        assert (groups % 12 == groups[:, :1] % 12).all(), "each group of 4 has one score"
        assert (groups.diff(dim=1) > 0).all(), by
