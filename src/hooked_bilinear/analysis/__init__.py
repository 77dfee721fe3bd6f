"""Weight-space analyses of bilinear MLPs: interaction matrices, eigendecomposition, the tensor B, HOSVD, truncation.

Every function works on `BilinearFactors` (the layer's W_gate, W_in, W_out with biases folded in); the same
analyses are methods of `HookedBilinearMLP`. Model-level helpers (directions, token read-outs) live in `readout`.
"""

from hooked_bilinear.analysis.decompose import Decomposition, decompose
from hooked_bilinear.analysis.eigen import Eigen, EigenSolver, eigendecompose
from hooked_bilinear.analysis.factors import BilinearFactors
from hooked_bilinear.analysis.features import (
    EigenApproximation,
    Example,
    FeatureBias,
    FeatureRanking,
    InteractionPairs,
    eigen_approximation,
    eigenvector_activations,
    feature_activations,
    feature_bias_terms,
    feature_interactions,
    outlier_count,
    output_feature_directions,
    output_feature_eigen,
    output_feature_offsets,
    rank_output_features,
    top_examples,
    top_interactions,
)
from hooked_bilinear.analysis.hosvd import HOSVD, hosvd
from hooked_bilinear.analysis.interaction import interaction_matrix, output_gram, tensor
from hooked_bilinear.analysis.readout import (
    TokenTable,
    contrast_directions,
    mlp_factors,
    top_tokens,
    unembedding_directions,
)
from hooked_bilinear.analysis.spectrum import (
    SpectrumStats,
    eigenvector_similarity,
    spectrum_stats,
)
from hooked_bilinear.analysis.truncation import (
    MLPReplacement,
    TruncatedBilinearMLP,
    TruncationCurve,
    replace_mlp,
    truncate,
    truncation_curve,
)

__all__ = [
    "HOSVD",
    "BilinearFactors",
    "MLPReplacement",
    "Decomposition",
    "Eigen",
    "EigenSolver",
    "EigenApproximation",
    "Example",
    "FeatureBias",
    "FeatureRanking",
    "InteractionPairs",
    "SpectrumStats",
    "TokenTable",
    "TruncatedBilinearMLP",
    "TruncationCurve",
    "contrast_directions",
    "decompose",
    "eigendecompose",
    "eigen_approximation",
    "eigenvector_activations",
    "eigenvector_similarity",
    "feature_activations",
    "feature_bias_terms",
    "feature_interactions",
    "hosvd",
    "interaction_matrix",
    "mlp_factors",
    "outlier_count",
    "output_feature_directions",
    "output_feature_eigen",
    "output_feature_offsets",
    "output_gram",
    "rank_output_features",
    "replace_mlp",
    "spectrum_stats",
    "tensor",
    "top_examples",
    "top_interactions",
    "top_tokens",
    "truncate",
    "truncation_curve",
    "unembedding_directions",
]
