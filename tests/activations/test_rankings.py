"""Feature rankings from streamed statistics equal the rankings of the in-memory activations (brute force: Python's
sorted over the full activation matrix, ties by feature id, NaN last), from one pass and from two merged shares;
joined with the weight ranking; clear errors for what was not collected."""

from __future__ import annotations

import math

import pytest
import torch

from hooked_bilinear import sae as S
from hooked_bilinear.activations.rankings import DataRanking, FeatureTable, feature_table, rank_features
from hooked_bilinear.activations.stats import (
    ColumnStats,
    TopKResult,
    column_statistics,
    eigen_approximation_stream,
    eigen_columns,
    sae_columns,
)
from hooked_bilinear.activations.store import ActivationStore
from hooked_bilinear.analysis.features import (
    eigen_approximation,
    eigenvector_activations,
    hook_activations,
    output_feature_eigen,
    rank_output_features,
)
from hooked_bilinear.errors import SAEError

HOOK_IN, HOOK_OUT = "blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out"
FIG9 = list(range(0, 512, 8))
RARE = 0.002  # on 1536 tokens: features active 1 to 3 times are "ultra-rare"


def brute_ranking(score: dict[int, float], descending: bool = True) -> list[int]:
    """Feature ids by score (largest first unless not descending), ties by id, NaN last by id."""
    known = [f for f in score if not math.isnan(score[f])]
    known.sort(key=lambda f: (-score[f] if descending else score[f], f))
    return known + sorted(f for f in score if math.isnan(score[f]))


def streamed(model, store: ActivationStore) -> tuple[ColumnStats, object]:
    sae_out = S.load(f"ts-synthetic-2l/{HOOK_OUT}")
    stats = column_statistics(store, {"out": (HOOK_OUT, sae_columns(sae_out))}, k=3, batch_size=500)["out"]
    approx = eigen_approximation_stream(model.blocks[0].mlp, sae_out, store, HOOK_IN, FIG9, ks=(1, 4))
    return stats, approx


@pytest.fixture(scope="module")
def weights(model):
    return rank_output_features(model.blocks[0].mlp, S.load(f"ts-synthetic-2l/{HOOK_OUT}"), progress=False)


@pytest.fixture(scope="module")
def in_memory(model, rows) -> dict[str, object]:
    """The brute-force scores from every activation held in memory."""
    mlp, sae_out = model.blocks[0].mlp, S.load(f"ts-synthetic-2l/{HOOK_OUT}")
    with torch.no_grad():
        f = sae_out.encode(hook_activations(model, rows, HOOK_OUT)).reshape(-1, sae_out.d_sae)
    x = hook_activations(model, rows, HOOK_IN).reshape(-1, model.cfg.d_model)
    active = f > 0
    n_active = active.sum(0)
    approx = eigen_approximation(mlp, sae_out, x, FIG9, ks=(1, 4))
    correlation = dict.fromkeys(range(sae_out.d_sae), math.nan)
    correlation.update(zip(FIG9, approx.correlation[:, 1].tolist()))
    ids = range(sae_out.d_sae)
    return {
        "n_active": n_active,
        "density": dict(zip(ids, (n_active.double() / len(f)).tolist())),
        "max_activation": dict(zip(ids, f.max(0).values.double().tolist())),
        "mean_active": dict(zip(ids, (f.double().where(active, 0.0).sum(0) / n_active).tolist())),
        "correlation": correlation,
    }


def test_rankings_from_a_stream_equal_the_in_memory_rankings(model, rows, weights, in_memory) -> None:
    store = ActivationStore(model, rows, [HOOK_IN, HOOK_OUT], model_batch_size=4)
    stats, approx = streamed(model, store)
    table = feature_table(stats, approximation=approx, weights=weights, rare_below=RARE)
    n_active = in_memory["n_active"]
    assert torch.equal(table.n_active, n_active) and torch.equal(table.features, torch.arange(512))
    assert torch.equal(table.dead, n_active == 0) and int(table.dead.sum()) > 0  # some dead: their ties are tested
    assert torch.equal(table.ultra_rare, (n_active > 0) & (n_active <= 3)) and int(table.ultra_rare.sum()) > 0
    for by in ("density", "max_activation", "mean_active", "correlation"):
        score = in_memory[by]
        for descending in (True, False):
            expected = brute_ranking(score, descending)
            got = rank_features(table, by, descending=descending)
            assert got.features.tolist() == expected, (by, descending)
            torch.testing.assert_close(
                got.score,
                torch.tensor([score[f] for f in expected], dtype=torch.float64),
                rtol=1e-12,
                atol=1e-9,
                equal_nan=True,
            )
        alive = {f: s for f, s in score.items() if n_active[f] > 0}
        assert rank_features(table, by, skip_dead=True).features.tolist() == brute_ranking(alive)
        common = {f: s for f, s in score.items() if n_active[f] > 3}
        assert rank_features(table, by, skip_dead=True, skip_ultra_rare=True).features.tolist() == brute_ranking(common)
    assert len(set(in_memory["density"].values())) < 400  # many ties among the counts, broken by feature id
    # the paper's feature selection: the weight ranking, restricted to the features alive in the data
    alive_by_weights = [f for f in weights.features.tolist() if n_active[f] > 0]
    assert rank_features(table, "weights", skip_dead=True).features.tolist() == alive_by_weights
    assert rank_features(table, "top_eigenvalue", skip_dead=True).features.tolist() == alive_by_weights
    assert rank_features(table, "weights").features.tolist() == weights.features.tolist()
    row = int(weights.features[0])
    assert table.top_eigenvalue[row] == weights.top_eigenvalue[0] and table.outliers[row] == weights.outliers[0]


def test_rankings_from_two_merged_shares_equal_one_pass(model, rows, weights) -> None:
    one, approx = streamed(model, ActivationStore(model, rows, [HOOK_IN, HOOK_OUT], model_batch_size=4))
    shares = [
        column_statistics(
            ActivationStore(model, rows, [HOOK_OUT], model_batch_size=4, share=(rank, 2)),
            {"out": (HOOK_OUT, sae_columns(S.load(f"ts-synthetic-2l/{HOOK_OUT}")))},
            k=3,
            edges=torch.tensor([0.0, 1.0]),
        )["out"]
        for rank in range(2)
    ]
    assert 0 < shares[1].rows < shares[0].rows  # forward batches 0, 2 and 1: unequal shares
    for merged in (shares[0].merge(shares[1]), shares[1].merge(shares[0])):
        assert merged.rows == one.rows and torch.equal(merged.density, one.density)
        assert torch.equal(merged.top.values, one.top.values) and torch.equal(merged.bottom.values, one.bottom.values)
        torch.testing.assert_close(merged.active_sum, one.active_sum, rtol=1e-12, atol=0)
        whole = feature_table(one, approximation=approx, weights=weights)
        table = feature_table(merged, approximation=approx, weights=weights)
        for by in ("density", "max_activation", "mean_active", "correlation", "weights"):
            for skip in (False, True):
                expected = rank_features(whole, by, skip_dead=skip).features
                assert torch.equal(rank_features(table, by, skip_dead=skip).features, expected), by
    assert torch.equal(merged.histogram, shares[0].histogram + shares[1].histogram)


def test_merged_shares_of_signed_columns_equal_brute_force(model, rows) -> None:
    """Eigenvector projections `v . x'` (both signs) with a threshold: bottom-k, counts and sums above it."""
    eigen = output_feature_eigen(model.blocks[0].mlp, S.load(f"ts-synthetic-2l/{HOOK_OUT}"), [0, 5, 9], k=2)
    columns = {"v": (HOOK_IN, eigen_columns(model.blocks[0].mlp, eigen))}
    shares = [
        column_statistics(
            ActivationStore(model, rows, [HOOK_IN], model_batch_size=4, share=(rank, 2)), columns, k=4, threshold=0.5
        )["v"]
        for rank in range(2)
    ]
    merged = shares[1].merge(shares[0])
    p = eigenvector_activations(model, 0, eigen.v.reshape(6, -1), rows).reshape(-1, 6).double()  # [tokens, 6]
    above = p > 0.5
    assert torch.equal(merged.counts(), above.sum(0)) and 0 < int(above.sum()) < p.numel()
    torch.testing.assert_close(merged.active_sum, p.where(above, 0.0).sum(0), rtol=1e-12, atol=0)
    for result, sign in ((merged.top, 1), (merged.bottom, -1)):
        best = (sign * p).T.topk(4, dim=1)
        assert torch.equal(result.values.double(), sign * best.values)
        assert torch.equal(result.index, best.indices)
    mean = p.where(above, 0.0).sum(0) / above.sum(0)
    expected = brute_ranking(dict(enumerate(mean.tolist())))
    assert rank_features(feature_table(merged), "mean_active").features.tolist() == expected


def test_a_subset_of_features_and_bad_input(model, rows, weights) -> None:
    store = ActivationStore(model, rows[:4], [HOOK_IN, HOOK_OUT], model_batch_size=4)
    sae_out = S.load(f"ts-synthetic-2l/{HOOK_OUT}")
    picked = [9, 3, 300, 41]  # columns in this order; the table is by feature id
    stats = column_statistics(store, {"out": (HOOK_OUT, sae_columns(sae_out, picked))}, k=2)["out"]
    table = feature_table(stats, picked)
    assert table.features.tolist() == sorted(picked)
    assert torch.equal(table.density, stats.density[[1, 0, 3, 2]].double())
    ranking = rank_features(table, "max_activation")
    assert isinstance(ranking, DataRanking) and isinstance(table, FeatureTable)
    assert set(ranking.features.tolist()) == set(picked)
    with pytest.raises(SAEError, match="approximation="):
        rank_features(table, "correlation")
    with pytest.raises(SAEError, match="weights="):
        rank_features(table, "weights")
    with pytest.raises(SAEError, match="active sums"):
        rank_features(feature_table(stats._replace(active_sum=None), picked), "mean_active")
    with pytest.raises(SAEError, match="rank by one of"):
        rank_features(table, "frequency")
    with pytest.raises(SAEError, match="one distinct feature id per column"):
        feature_table(stats, [9, 3, 300])
    with pytest.raises(SAEError, match="one distinct feature id per column"):
        feature_table(stats, [9, 9, 300, 41])
    with pytest.raises(SAEError, match=r"covers feature \d+, which the statistics do not hold"):
        feature_table(stats, picked, weights=weights)  # ranked all 512 features
    approx = eigen_approximation_stream(model.blocks[0].mlp, sae_out, store, HOOK_IN, picked, ks=(1, 2))
    assert torch.equal(feature_table(stats, picked, approximation=approx).correlation[0], approx.correlation[1, 1])
    with pytest.raises(SAEError, match=r"k=3 is not among the approximation's ks \(1, 2\)"):
        feature_table(stats, picked, approximation=approx, k=3)
    with pytest.raises(SAEError, match="same columns and k"):
        stats.merge(stats._replace(k=3))
    nothing = TopKResult(torch.empty(4, 0), torch.empty(4, 0, dtype=torch.long))
    with pytest.raises(SAEError, match="no rows"):
        feature_table(stats._replace(rows=0, top=nothing, density=torch.full((4,), math.nan)), picked)
    with pytest.raises(SAEError, match="held no activations"):  # 1 forward batch, 2 ranks: rank 1 has none
        column_statistics(
            ActivationStore(model, rows[:4], [HOOK_OUT], model_batch_size=4, share=(1, 2)),
            {"out": (HOOK_OUT, sae_columns(sae_out, picked))},
        )


def test_progress_bars_go_to_stderr(model, rows, capsys) -> None:
    store = ActivationStore(model, rows[:2], [HOOK_IN, HOOK_OUT], model_batch_size=2)
    sae_out = S.load(f"ts-synthetic-2l/{HOOK_OUT}")
    column_statistics(store, {"out": (HOOK_OUT, sae_columns(sae_out, [0]))}, progress=True)
    eigen_approximation_stream(model.blocks[0].mlp, sae_out, store, HOOK_IN, [0], ks=(1,), progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "column statistics" in captured.err and "Fig. 9 correlation" in captured.err and "256" in captured.err


def test_counts_are_recovered_exactly_from_densities() -> None:
    """density = count / rows in float64; count = density * rows rounded, never truncated (e.g. 1/49 * 49 < 1)."""
    for rows in range(1, 300):
        counts = torch.arange(rows + 1)
        density = counts.double() / rows
        stats = ColumnStats(
            TopKResult(torch.zeros(rows + 1, 1), torch.zeros(rows + 1, 1, dtype=torch.long)), None, density, None, rows
        )
        assert torch.equal(stats.counts(), counts)
