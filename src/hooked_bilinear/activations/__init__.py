"""Activations at dataset scale: a streaming store over a token source (one forward pass for several hooks, stopped
after the last one, a seeded shuffle buffer), a sharded on-disk cache, and one-pass statistics of many columns
(top-k / bottom-k examples, densities, histograms, Fig. 9's correlation) in memory independent of the data's size,
and the feature rankings computed from them.

    from hooked_bilinear.activations import ActivationStore, TopK
    store = ActivationStore(model, "tokens.npy", ["blocks.0.mlp.hook_in"], buffer_size=65536, progress=True)
    for batch in store.batches(4096):
        x = batch.activations["blocks.0.mlp.hook_in"]     # [4096, d_model], shuffled across sequences
"""

from hooked_bilinear.activations.rankings import DataRanking, FeatureTable, feature_table, rank_features
from hooked_bilinear.activations.stats import (
    ColumnStats,
    Correlation,
    Density,
    Histogram,
    TopK,
    TopKResult,
    column_statistics,
    eigen_approximation_stream,
    eigen_columns,
    examples,
    merge_across_ranks,
    sae_columns,
)
from hooked_bilinear.activations.store import ActivationBatch, ActivationStore, ActivationStream

__all__ = [
    "ActivationBatch",
    "ActivationStore",
    "ActivationStream",
    "ColumnStats",
    "Correlation",
    "DataRanking",
    "Density",
    "FeatureTable",
    "Histogram",
    "TopK",
    "TopKResult",
    "column_statistics",
    "eigen_approximation_stream",
    "eigen_columns",
    "examples",
    "feature_table",
    "merge_across_ranks",
    "rank_features",
    "sae_columns",
]
