"""Feature rankings from one-pass statistics: what a researcher ranks an SAE's features by, computed from the
streamed `ColumnStats` (`column_statistics`) and Fig. 9's correlation (`eigen_approximation_stream`), joined with
the weight-based ranking (`analysis.rank_output_features`), without holding the dataset's activations.

    stats = column_statistics(cache, {"out": (hook_out, sae_columns(sae_out))}, k=10)["out"]
    approx = eigen_approximation_stream(mlp, sae_out, cache, hook_in)
    table = feature_table(stats, approximation=approx, weights=rank_output_features(mlp, sae_out))
    rank_features(table, "density").features[:10]                       # the most frequent features
    rank_features(table, "top_eigenvalue", skip_dead=True).features     # the paper's selection, alive in the data

Every ranking is a stable sort of one score, best first (largest first unless `descending=False`), ties kept in
feature-id order, features without the score (NaN: dead features' mean activation, features Fig. 9 left out) last
in feature-id order. The scores are exact functions of the statistics (counts, top-k values) or float64 sums, so
the rankings equal those of the in-memory activations, and those of shares merged (`ColumnStats.merge`, ranks).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from beartype import beartype
from jaxtyping import Bool, Float, Int

from hooked_bilinear.activations.stats import ColumnStats
from hooked_bilinear.analysis.features import EigenApproximation, FeatureRanking, Features
from hooked_bilinear.errors import SAEError

RANKED_BY = ("density", "max_activation", "mean_active", "correlation", "top_eigenvalue", "weights")
ULTRA_RARE = 1e-5  # a common cut for "ultra-low density" features: log10 density < -5
_WHY = {
    "mean_active": "statistics without active sums: compute them with column_statistics",
    "correlation": "pass approximation=eigen_approximation_stream(...) to feature_table",
    "top_eigenvalue": "pass weights=rank_output_features(...) to feature_table",
    "weights": "pass weights=rank_output_features(...) to feature_table",
}


class FeatureTable(NamedTuple):
    """Per-feature statistics, one row per feature, by feature id ascending; all [n].

    Attributes:
        features: the feature ids (long).
        n_active: rows on which the feature was above the threshold (long).
        density: n_active / rows (float64).
        dead: never active (bool).
        ultra_rare: active, with density below `rare_below` (bool).
        max_activation: the largest value (the top-1 of the running top-k; float64, NaN without rows).
        mean_active: the mean value when active (float64, NaN when dead); None when the statistics hold no sums.
        correlation: Fig. 9's correlation of the top-k eigen approximation at one k (float64, NaN for features it
            left out or did not score); None without an approximation.
        top_eigenvalue: the signed largest-|lambda| eigenvalue of the weight ranking (float64, NaN for features it
            did not rank); None without weights.
        outliers: the weight ranking's outlier count (float64, NaN for features it did not rank); None without.
        weight_score: the weight ranking's own score (float64, NaN for features it did not rank); None without.
    """

    features: Int[torch.Tensor, " n"]
    n_active: Int[torch.Tensor, " n"]
    density: Float[torch.Tensor, " n"]
    dead: Bool[torch.Tensor, " n"]
    ultra_rare: Bool[torch.Tensor, " n"]
    max_activation: Float[torch.Tensor, " n"]
    mean_active: Float[torch.Tensor, " n"] | None
    correlation: Float[torch.Tensor, " n"] | None
    top_eigenvalue: Float[torch.Tensor, " n"] | None
    outliers: Float[torch.Tensor, " n"] | None
    weight_score: Float[torch.Tensor, " n"] | None


class DataRanking(NamedTuple):
    """Features by one score, best first: features [m] (long), score [m] (float64; NaN last)."""

    features: Int[torch.Tensor, " m"]
    score: Float[torch.Tensor, " m"]


def _joined(ids: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, what: str) -> torch.Tensor:
    """values [len(keys)] placed at the rows of `ids` whose id they are for (NaN elsewhere) [len(ids)]."""
    where = {int(feature): row for row, feature in enumerate(ids.tolist())}
    missing = [int(feature) for feature in keys.tolist() if int(feature) not in where]
    if missing:
        raise SAEError(
            f"{what} covers feature {missing[0]}, which the statistics do not hold ({len(ids)} features, ids "
            f"{ids.min().item()}..{ids.max().item()}): compute both for the same SAE and the same features."
        )
    out = torch.full((len(ids),), float("nan"), dtype=torch.float64)
    out[torch.tensor([where[int(feature)] for feature in keys.tolist()], dtype=torch.long)] = values.double().cpu()
    return out


@beartype
def feature_table(
    stats: ColumnStats,
    features: Features = None,
    *,
    approximation: EigenApproximation | None = None,
    k: int | None = None,
    weights: FeatureRanking | None = None,
    rare_below: float = ULTRA_RARE,
) -> FeatureTable:
    """The per-feature table of one column set's statistics, joined by feature id with Fig. 9's correlation and the
    weight-based ranking.

    Args:
        stats: the statistics of the features' activations (`column_statistics` of `sae_columns(sae, features)`).
        features: the feature id of each column (an int, a sequence or a 1-d tensor, as given to `sae_columns`);
            None (default) for columns 0..n_columns - 1.
        approximation: Fig. 9's result (`eigen_approximation_stream`, or `analysis.eigen_approximation`) for some
            or all of these features.
        k: which of the approximation's ks to keep (default: its largest).
        weights: the weight-based ranking (`analysis.rank_output_features`) of some or all of these features.
        rare_below: features active with a density below it are flagged ultra-rare (default 1e-5).

    Returns:
        A `FeatureTable`, rows by feature id ascending.

    Raises:
        SAEError: `features` not one distinct id per column, statistics of no rows, `k` not among the
            approximation's ks, or an approximation or ranking of features the statistics do not hold.
    """
    n_columns = len(stats.density)
    ids = _feature_ids(features, n_columns)
    if stats.rows == 0 or stats.top.values.shape[1] == 0:
        raise SAEError("the statistics hold no rows: compute them over a stream of at least one activation.")
    order = ids.argsort(stable=True)
    ids = ids[order]
    n_active = stats.counts()[order]
    density = stats.density[order].double()
    mean_active = None
    if stats.active_sum is not None:
        mean_active = torch.where(n_active > 0, stats.active_sum[order].double() / n_active, float("nan"))
    correlation = None
    if approximation is not None:
        ks = list(approximation.ks)
        chosen = max(ks) if k is None else k
        if chosen not in ks:
            raise SAEError(f"k={chosen} is not among the approximation's ks {tuple(ks)}: pick one of them.")
        column = approximation.correlation[:, ks.index(chosen)]
        correlation = _joined(ids, approximation.features, column, "the approximation")
    top_eigenvalue = outliers = weight_score = None
    if weights is not None:
        top_eigenvalue = _joined(ids, weights.features, weights.top_eigenvalue, "the weight ranking")
        outliers = _joined(ids, weights.features, weights.outliers, "the weight ranking")
        weight_score = _joined(ids, weights.features, weights.score, "the weight ranking")
    return FeatureTable(
        features=ids,
        n_active=n_active,
        density=density,
        dead=n_active == 0,
        ultra_rare=(n_active > 0) & (density < rare_below),
        max_activation=stats.top.values[order, 0].double(),
        mean_active=mean_active,
        correlation=correlation,
        top_eigenvalue=top_eigenvalue,
        outliers=outliers,
        weight_score=weight_score,
    )


def _feature_ids(features: Features, n_columns: int) -> torch.Tensor:
    if features is None:
        return torch.arange(n_columns)
    ids = torch.as_tensor([features] if isinstance(features, int) else features, dtype=torch.long).reshape(-1)
    if len(ids) != n_columns or len(ids.unique()) != len(ids):
        raise SAEError(
            f"features must give one distinct feature id per column of the statistics ({n_columns}), got "
            f"{len(ids)} ids ({len(ids.unique())} distinct): pass the features given to sae_columns."
        )
    return ids


@beartype
def rank_features(
    table: FeatureTable,
    by: str = "density",
    *,
    descending: bool = True,
    skip_dead: bool = False,
    skip_ultra_rare: bool = False,
) -> DataRanking:
    """Features ranked by one column of the table, best first (see the module doc for ties and NaN).

    Args:
        table: a `FeatureTable` (`feature_table`).
        by: "density" (how often active), "max_activation" (the largest activation), "mean_active" (the mean
            activation when active), "correlation" (Fig. 9: how well the top-k eigenvectors explain the feature),
            "top_eigenvalue" (|largest-|lambda| eigenvalue| of the weight ranking) or "weights" (the weight
            ranking's own score: its order, restricted to the features kept).
        descending: largest first (default); False for smallest first (e.g. the rarest features by density).
        skip_dead: leave out features never active in the data.
        skip_ultra_rare: leave out ultra-rare features (`table.ultra_rare`).

    Returns:
        `DataRanking(features, score)`.

    Raises:
        SAEError: an unknown `by`, or a score the table does not hold (no sums, approximation or weights).
    """
    if by not in RANKED_BY:
        raise SAEError(f"by={by!r}: rank by one of {', '.join(RANKED_BY)}.")
    scores = {
        "density": table.density,
        "max_activation": table.max_activation,
        "mean_active": table.mean_active,
        "correlation": table.correlation,
        "top_eigenvalue": table.top_eigenvalue.abs() if table.top_eigenvalue is not None else None,
        "weights": table.weight_score,
    }
    score = scores[by]
    if score is None:
        raise SAEError(f"cannot rank by {by!r}: the table holds no {by} ({_WHY[by]}).")
    keep = torch.ones(len(table.features), dtype=torch.bool)
    if skip_dead:
        keep &= ~table.dead
    if skip_ultra_rare:
        keep &= ~table.ultra_rare
    return _ranked(table.features[keep], score[keep], descending)


def _ranked(features: torch.Tensor, score: torch.Tensor, descending: bool) -> DataRanking:
    """Stable sort of the scored features (in feature-id order), NaN scores after the rest."""
    known = ~score.isnan()
    rows = known.nonzero()[:, 0]
    order = rows[score[rows].argsort(descending=descending, stable=True)]
    order = torch.cat([order, (~known).nonzero()[:, 0]])
    return DataRanking(features[order], score[order])
