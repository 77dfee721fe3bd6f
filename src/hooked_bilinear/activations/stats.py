"""Statistics of many columns (SAE features, eigenvector projections or contributions) over a stream of activations,
in one pass and in memory O(n_columns * k): running top-k and bottom-k with where they occurred, activation density,
histograms, and correlations.

Each statistic is an accumulator: `update(values [n, n_columns], index [n])` with a batch's values and their
`index` (= sequence * seq_len + position, as an ActivationStore hands them out), then `result()`. Accumulators of
disjoint shares of the data (other processes, other files) combine with `merge`, to the same result as one pass.

    top = TopK(n_columns=sae.d_sae, k=20)
    for batch in store.batches(4096, shuffle=False):
        top.update(sae.encode(batch.activations[hook]), batch.index)
    best = top.result()       # values [d_sae, 20], index [d_sae, 20], best first

`column_statistics` runs the pass for several column sets at once (`sae_columns`, `eigen_columns`);
`eigen_approximation_stream` is Fig. 9's correlation from a stream; `rankings.feature_table` / `rank_features` rank
features by these statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, cast

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from tqdm.auto import tqdm

from hooked_bilinear.activations.cache import ActivationCache
from hooked_bilinear.activations.store import ActivationStore
from hooked_bilinear.analysis.eigen import Eigen
from hooked_bilinear.analysis.factors import as_factors
from hooked_bilinear.analysis.features import (
    EigenApproximation,
    Example,
    Features,
    feature_indices,
    output_feature_eigen,
    sae_tensors,
    top_examples,
)
from hooked_bilinear.errors import SAEError

Columns = Callable[[torch.Tensor], torch.Tensor]  # activations [n, d] -> values [n, n_columns]


def _check_batch(values: torch.Tensor, index: torch.Tensor, n_columns: int) -> None:
    if values.ndim != 2 or values.shape[1] != n_columns or index.shape != (values.shape[0],):
        raise ValueError(
            f"update takes values [n, n_columns={n_columns}] and index [n]; got {tuple(values.shape)} and "
            f"{tuple(index.shape)}."
        )


@dataclass(frozen=True)
class TopKResult:
    """The k best values of each column, best first: values [n_columns, k] and index [n_columns, k] (sequence *
    seq_len + position); k is the number of rows seen when fewer."""

    values: torch.Tensor
    index: torch.Tensor

    def sequence_position(self, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence, position) of each entry, both [n_columns, k]."""
        return self.index.div(seq_len, rounding_mode="floor"), self.index.remainder(seq_len)


class TopK:
    """Running top-k (or bottom-k with largest=False) of each of `n_columns` columns with where each value occurred.

    Ties between exactly equal values keep the lower index where they meet across batches; within one batch the
    pick among equal values at the k-th place is torch.topk's (as in `analysis.features.top_examples`).

    Args:
        n_columns: how many columns each update holds.
        k: how many values to keep per column.
        largest: top-k (True) or bottom-k (False).
    """

    @beartype
    def __init__(self, n_columns: int, k: int, *, largest: bool = True) -> None:
        if n_columns < 1 or k < 1:
            raise ValueError(f"n_columns and k must be >= 1, got {n_columns} and {k}.")
        self.n_columns, self.k, self.largest = n_columns, k, largest
        self.values: torch.Tensor | None = None  # [n_columns, <= k], best first
        self.index = torch.empty(n_columns, 0, dtype=torch.long)

    def _keep_best(self, values: torch.Tensor, index: torch.Tensor) -> None:
        by_index = index.argsort(dim=1, stable=True)
        values, index = values.gather(1, by_index), index.gather(1, by_index)
        order = values.argsort(dim=1, descending=self.largest, stable=True)[:, : self.k]
        self.values, self.index = values.gather(1, order), index.gather(1, order)

    @jaxtyped(typechecker=beartype)
    def update(self, values: Float[torch.Tensor, "n c"], index: Int[torch.Tensor, " n"]) -> None:
        """Take a batch: values [n, n_columns] and their index [n]."""
        _check_batch(values, index, self.n_columns)
        if values.shape[0] == 0:
            return
        values = values.detach().float() if values.dtype != torch.float64 else values.detach()
        best = values.T.topk(min(self.k, values.shape[0]), dim=1, largest=self.largest)
        new_values, new_index = best.values.cpu(), index.cpu()[best.indices.cpu()]
        if self.values is not None:
            new_values = torch.cat([self.values, new_values.to(self.values.dtype)], dim=1)
            new_index = torch.cat([self.index, new_index], dim=1)
        self._keep_best(new_values, new_index)

    def merge(self, other: TopK) -> TopK:
        """This accumulator with another's (of a disjoint share of the rows) folded in; returns self."""
        if (other.n_columns, other.k, other.largest) != (self.n_columns, self.k, self.largest):
            raise ValueError("only accumulators with the same n_columns, k and direction merge.")
        if other.values is not None:
            if self.values is None:
                self.values, self.index = other.values.clone(), other.index.clone()
            else:
                self._keep_best(
                    torch.cat([self.values, other.values.to(self.values.dtype)], dim=1),
                    torch.cat([self.index, other.index], dim=1),
                )
        return self

    def result(self) -> TopKResult:
        """The best values so far (see TopKResult)."""
        if self.values is None:
            return TopKResult(torch.empty(self.n_columns, 0), self.index)
        return TopKResult(self.values.clone(), self.index.clone())


class Density:
    """Running fraction of rows on which each column's value exceeds `threshold` (SAE features: active), and the
    float64 sum of those values (for the mean activation when active)."""

    @beartype
    def __init__(self, n_columns: int, threshold: float = 0.0) -> None:
        self.n_columns, self.threshold = n_columns, threshold
        self.counts = torch.zeros(n_columns, dtype=torch.long)
        self.sums = torch.zeros(n_columns, dtype=torch.float64)
        self.rows = 0

    @jaxtyped(typechecker=beartype)
    def update(self, values: Float[torch.Tensor, "n c"], index: Int[torch.Tensor, " n"] | None = None) -> None:
        """Take a batch of values [n, n_columns] (index unused, accepted for a uniform interface)."""
        if values.ndim != 2 or values.shape[1] != self.n_columns:
            raise ValueError(f"update takes values [n, n_columns={self.n_columns}], got {tuple(values.shape)}.")
        active = values > self.threshold
        self.counts += active.sum(0).cpu()
        self.sums += values.detach().double().where(active, 0.0).sum(0).cpu()
        self.rows += values.shape[0]

    def merge(self, other: Density) -> Density:
        """Fold in another accumulator's counts; returns self."""
        self.counts += other.counts
        self.sums += other.sums
        self.rows += other.rows
        return self

    def result(self) -> torch.Tensor:
        """Density [n_columns] (float64; NaN before any row)."""
        return self.counts.double() / self.rows if self.rows else torch.full((self.n_columns,), float("nan"))

    def active_sum(self) -> torch.Tensor:
        """The sum of the values above the threshold, per column [n_columns] (float64)."""
        return self.sums.clone()


class Histogram:
    """Running histograms of each column over fixed bin edges [m] (ascending): counts [n_columns, m + 1], bin b
    holding `edges[b - 1] <= value < edges[b]` (bin 0 below edges[0], bin m from edges[-1] up)."""

    @beartype
    def __init__(self, n_columns: int, edges: torch.Tensor) -> None:
        if edges.ndim != 1 or len(edges) < 1 or not bool((edges[1:] > edges[:-1]).all()):
            raise ValueError("edges must be a 1-d ascending tensor.")
        self.n_columns, self.edges = n_columns, edges.double()
        self.counts = torch.zeros(n_columns, len(edges) + 1, dtype=torch.long)

    @jaxtyped(typechecker=beartype)
    def update(self, values: Float[torch.Tensor, "n c"], index: Int[torch.Tensor, " n"] | None = None) -> None:
        """Take a batch of values [n, n_columns]."""
        if values.ndim != 2 or values.shape[1] != self.n_columns:
            raise ValueError(f"update takes values [n, n_columns={self.n_columns}], got {tuple(values.shape)}.")
        bins = torch.bucketize(values.detach().double().cpu().T.contiguous(), self.edges, right=True)  # [c, n]
        self.counts.scatter_add_(1, bins, torch.ones_like(bins))

    def merge(self, other: Histogram) -> Histogram:
        """Fold in another accumulator's counts; returns self."""
        self.counts += other.counts
        return self

    def result(self) -> torch.Tensor:
        """Counts [n_columns, len(edges) + 1]."""
        return self.counts.clone()


class Correlation:
    """Running Pearson correlation of pairs of columns (a [n, c], b [n, c]), each column over the rows its mask
    keeps; sums in float64."""

    def __init__(self, n_columns: int) -> None:
        self.n_columns = n_columns
        self.sums = torch.zeros(6, n_columns, dtype=torch.float64)  # n, a, b, aa, bb, ab

    def update(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Take a batch: a, b [n, n_columns] and which rows count for which column (mask [n, n_columns])."""
        if a.shape != b.shape or a.ndim != 2 or a.shape[1] != self.n_columns:
            raise ValueError(f"a and b must both be [n, {self.n_columns}], got {tuple(a.shape)} and {tuple(b.shape)}.")
        w = torch.ones_like(a, dtype=torch.float64) if mask is None else mask.to(torch.float64)
        a, b = a.double() * w, b.double() * w
        self.sums += torch.stack([w.sum(0), a.sum(0), b.sum(0), (a * a).sum(0), (b * b).sum(0), (a * b).sum(0)]).cpu()

    def merge(self, other: Correlation) -> Correlation:
        """Fold in another accumulator's sums; returns self."""
        self.sums += other.sums
        return self

    def result(self) -> torch.Tensor:
        """Correlation [n_columns] (NaN where a column is constant or has no rows)."""
        n, a, b, aa, bb, ab = self.sums
        covariance = n * ab - a * b
        denominator = ((n * aa - a * a).clamp_min(0) * (n * bb - b * b).clamp_min(0)).sqrt()
        return torch.where(denominator > 0, covariance / denominator, torch.full_like(denominator, float("nan")))

    def count(self) -> torch.Tensor:
        """Rows counted per column [n_columns]."""
        return self.sums[0].round().long()


@beartype
def sae_columns(sae: Any, features: Features = None) -> Columns:
    """Columns = an SAE's feature activations `sae.encode(x)[:, features]`.

    Args:
        sae: the SAE (anything with `encode`).
        features: the features to keep (default: all).

    Returns:
        `Columns` for `column_statistics`: a function of a batch of activations -> [n, n_columns].
    """
    ids = feature_indices(sae, features)

    def columns(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return sae.encode(x.to(sae_tensors(sae)[0].dtype))[:, ids]

    return columns


@beartype
def eigen_columns(mlp: Any, eigen: Eigen, kind: str = "projection", dtype: torch.dtype | None = None) -> Columns:
    """Columns = for each eigenvector v (eigen.v [..., k, d_in] flattened to [n_columns, d_in], in that order) of
    an MLP's Q_u, the projection `v . x'` (kind="projection") or the contribution `lambda (v . x')^2`
    (kind="contribution") of the MLP input x (hook_in), x' = x with the constant 1 appended for layers with biases.

    Args:
        mlp: the bilinear layer (component, module or `BilinearFactors`).
        eigen: the eigendecomposition of its Q_u (`analysis.eigendecompose`).
        kind: "projection" or "contribution".
        dtype: the dtype to compute in (default: the weights').

    Returns:
        `Columns` for `column_statistics`: a function of a batch of MLP inputs -> [n, n_columns].
    """
    if kind not in ("projection", "contribution"):
        raise ValueError(f"kind must be 'projection' or 'contribution', got {kind!r}.")
    factors = as_factors(mlp, dtype)
    v = eigen.v.reshape(-1, eigen.v.shape[-1]).to(factors.dtype)
    lam = eigen.lambda_.reshape(-1).to(factors.dtype)
    if v.shape[1] != factors.d_in:
        raise ValueError(f"eigenvectors have size {v.shape[1]}, this MLP's input {factors.d_in}.")

    def columns(x: torch.Tensor) -> torch.Tensor:
        projection = factors.augment(x.to(factors.dtype)) @ v.T
        return projection if kind == "projection" else lam * projection.square()

    return columns


Accumulator = TypeVar("Accumulator", TopK, Density, Histogram, Correlation)


def merge_across_ranks(accumulator: Accumulator) -> Accumulator:
    """Under torch.distributed, every rank's accumulator (of its share of the data) merged in rank order: each rank
    gets the one-process result (call it on all ranks). Without a process group, the accumulator itself.

    Args:
        accumulator: a `TopK`, `Density`, `Histogram` or `Correlation` of this rank's share.

    Returns:
        The accumulator of all ranks' data.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return accumulator
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, accumulator)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    return cast(Accumulator, merged)


class ColumnStats(NamedTuple):
    """One column set's statistics over a pass: top and bottom [n_columns, k], density [n_columns], histogram
    [n_columns, len(edges) + 1] (None without edges), rows seen, the sum of the values above the density threshold
    [n_columns] (float64; the mean activation when active is active_sum / (density * rows)), and k."""

    top: TopKResult
    bottom: TopKResult | None
    density: torch.Tensor
    histogram: torch.Tensor | None
    rows: int
    active_sum: torch.Tensor | None = None
    k: int | None = None

    def counts(self) -> torch.Tensor:
        """Rows on which each column was above the threshold [n_columns] (long; exact: density * rows rounded)."""
        if self.rows == 0:
            return torch.zeros(len(self.density), dtype=torch.long)
        return (self.density * self.rows).round().long()

    def merge(self, other: ColumnStats) -> ColumnStats:
        """The statistics of this share of the rows and another's (disjoint) together: what one pass over both
        gives (top-k and bottom-k, densities and histograms exactly; active_sum up to float64 rounding).

        Args:
            other: the same column set's statistics over another share of the data (same k, bottom, edges).

        Returns:
            A new `ColumnStats` of both shares.

        Raises:
            SAEError: statistics of other columns or settings (k, bottom-k, histograms), or without k (built by
                hand).
        """
        if self.k is None or other.k != self.k or len(other.density) != len(self.density):
            raise SAEError(
                f"only statistics of the same columns and k merge (n_columns {len(self.density)} and "
                f"{len(other.density)}, k {self.k} and {other.k}); compute both with column_statistics."
            )
        if (self.bottom is None) != (other.bottom is None) or (self.histogram is None) != (other.histogram is None):
            raise SAEError("only statistics with the same settings (bottom, edges) merge.")
        n_columns, rows = len(self.density), self.rows + other.rows
        counts = self.counts() + other.counts()
        bottom = None
        if self.bottom is not None and other.bottom is not None:
            bottom = _merged(self.bottom, other.bottom, self.k, largest=False)
        return ColumnStats(
            _merged(self.top, other.top, self.k, largest=True),
            bottom,
            counts.double() / rows if rows else torch.full((n_columns,), float("nan")),
            self.histogram + other.histogram if self.histogram is not None and other.histogram is not None else None,
            rows,
            self.active_sum + other.active_sum
            if self.active_sum is not None and other.active_sum is not None
            else None,
            self.k,
        )


def _merged(a: TopKResult, b: TopKResult, k: int, *, largest: bool) -> TopKResult:
    """Two shares' top-k results as one (TopK.merge on accumulators holding them)."""
    accumulators = []
    for part in (a, b):
        accumulator = TopK(part.values.shape[0], k, largest=largest)
        if part.values.shape[1]:
            accumulator.values, accumulator.index = part.values.clone(), part.index.clone()
        accumulators.append(accumulator)
    return accumulators[0].merge(accumulators[1]).result()


class _Accumulators:
    def __init__(self, n_columns: int, k: int, bottom: bool, threshold: float, edges: torch.Tensor | None) -> None:
        self.k = k
        self.top = TopK(n_columns, k)
        self.bottom = TopK(n_columns, k, largest=False) if bottom else None
        self.density = Density(n_columns, threshold)
        self.histogram = Histogram(n_columns, edges) if edges is not None else None

    def parts(self) -> list[Any]:
        return [a for a in (self.top, self.bottom, self.density, self.histogram) if a is not None]

    def update(self, values: torch.Tensor, index: torch.Tensor) -> None:
        for accumulator in self.parts():
            accumulator.update(values, index)

    def merge_across_ranks(self) -> None:
        self.top, self.density = merge_across_ranks(self.top), merge_across_ranks(self.density)
        if self.bottom is not None:
            self.bottom = merge_across_ranks(self.bottom)
        if self.histogram is not None:
            self.histogram = merge_across_ranks(self.histogram)

    def result(self) -> ColumnStats:
        return ColumnStats(
            self.top.result(),
            self.bottom.result() if self.bottom is not None else None,
            self.density.result(),
            self.histogram.result() if self.histogram is not None else None,
            self.density.rows,
            self.density.active_sum(),
            self.k,
        )


def _is_share(store: Any) -> bool:
    """Whether the store streams one rank's share (ActivationStore(share=(rank, world_size)), world_size > 1)."""
    share = getattr(store, "share", None)
    return isinstance(share, tuple) and share[1] > 1


def _rows_bar(store: Any, progress: bool, desc: str) -> Any:
    """A tqdm bar over the rows of one pass (its total where the source knows it: a cache)."""
    return tqdm(total=getattr(store, "n_rows", None), desc=desc, unit="row", unit_scale=True, disable=not progress)


@beartype
def column_statistics(
    store: ActivationStore | ActivationCache,
    columns: dict[str, tuple[str, Columns]],
    *,
    k: int = 10,
    bottom: bool = True,
    threshold: float = 0.0,
    edges: torch.Tensor | None = None,
    batch_size: int = 4096,
    progress: bool = False,
) -> dict[str, ColumnStats]:
    """One pass over `store` (in corpus order) computing, for each named column set `name: (hook, columns)`, the
    top-k (and bottom-k) values with their index, the density (value > threshold), the sum of the values above the
    threshold, and histograms over `edges`.

    With a store that streams one rank's share (`ActivationStore(..., share=(rank, world_size))`) under
    torch.distributed, every rank's statistics are merged (call it on every rank): each rank gets the one-process
    result. Without a process group, the share's own statistics (merge shares with `ColumnStats.merge`).

    Args:
        store: the activation store or cache; every hook named must be one of its hook_names.
        columns: name -> (hook name, a function activations [n, d] -> values [n, n_columns]) (`sae_columns`,
            `eigen_columns`).
        k: how many top and bottom values to keep per column.
        bottom: also keep the bottom-k.
        threshold: density counts values above it.
        edges: histogram bin edges (None: no histograms).
        batch_size: activations per update.
        progress: a tqdm bar over the rows.

    Returns:
        name -> ColumnStats.

    Raises:
        SAEError: a column set reads a hook the store does not stream, or the stream holds no activations.
    """
    for name, (hook, _) in columns.items():
        if hook not in store.hook_names:
            raise SAEError(
                f"column set {name!r} reads hook {hook!r}, which the store does not stream ({store.hook_names})."
            )
    accumulators: dict[str, _Accumulators] = {}
    with _rows_bar(store, progress, "column statistics") as bar:
        for batch in store.batches(batch_size, shuffle=False):
            for name, (hook, function) in columns.items():
                values = function(batch.activations[hook])
                if name not in accumulators:
                    accumulators[name] = _Accumulators(values.shape[1], k, bottom, threshold, edges)
                accumulators[name].update(values, batch.index)
            bar.update(len(batch.index))
    if columns and not accumulators:
        raise SAEError("the stream held no activations (a share with no sequences?): nothing to take statistics of.")
    if _is_share(store):
        for accumulator in accumulators.values():
            accumulator.merge_across_ranks()
    return {name: accumulators[name].result() for name in columns}


@beartype
def examples(store: ActivationStore, top: TopKResult, column: int, context: int = 8, after: int = 2) -> list[Example]:
    """The entries of one column of a TopKResult as `analysis.features.Example`s, with `context` tokens before and
    `after` tokens after, read back from the store's token source (as `top_examples` shows them).

    Args:
        store: the store whose token source the statistics were taken over.
        top: a `TopKResult` (from `TopK.result()` or `column_statistics`).
        column: which column.
        context: tokens shown before each example.
        after: tokens shown after it.

    Returns:
        One `Example` per entry of the column, strongest first.
    """
    out = []
    for value, index in zip(top.values[column].tolist(), top.index[column].tolist()):
        sequence, position = divmod(int(index), store.seq_len)
        row = torch.tensor(store.sequence_tokens(sequence))[None]
        alone = torch.full(row.shape, -torch.inf)  # top_examples renders the one entry: the same text
        alone[0, position] = value
        (example,) = top_examples(store.tokenizer, row, alone, k=1, context=context, after=after)
        out.append(example._replace(sequence=sequence))
    return out


@beartype
def eigen_approximation_stream(
    mlp: Any,
    sae_out: Any,
    store: ActivationStore | ActivationCache,
    hook_in: str,
    features: Features = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    min_active: int = 10,
    batch_size: int = 4096,
    dtype: torch.dtype | None = torch.float64,
    progress: bool = False,
) -> EigenApproximation:
    """Fig. 9 (`analysis.features.eigen_approximation`) from a stream of the MLP's inputs (`hook_in`), in one pass
    with running sums: the correlation between the top-k eigen approximation and the output SAE's activation over
    the inputs where the feature is active. Equal to the in-memory result up to float64 rounding. With a store that
    streams one rank's share under torch.distributed, the running sums of every rank are merged (call it on every
    rank), as in `column_statistics`.

    Args:
        mlp: the bilinear layer (component, module or `BilinearFactors`).
        sae_out: the SAE on the layer's output; its encoder rows are the output directions.
        store: a store or cache that streams `hook_in`.
        hook_in: the MLP input hook the store streams.
        features: the output features to score (default: all).
        ks: the numbers of top eigenvectors to approximate with.
        min_active: features active on fewer inputs are left out.
        batch_size: inputs per step.
        dtype: the dtype of the running sums.
        progress: a tqdm bar over the inputs.

    Returns:
        An `EigenApproximation`, as `analysis.features.eigen_approximation` returns.

    Raises:
        SAEError: the store does not stream `hook_in`.
        ValueError: ks outside 1..d_in.
    """
    if hook_in not in store.hook_names:
        raise SAEError(f"the store does not stream {hook_in!r} ({store.hook_names}).")
    factors = as_factors(mlp, dtype)
    ids = feature_indices(sae_out, features)
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1 or max(ks) > factors.d_in:
        raise ValueError(f"ks must lie in 1..{factors.d_in}, got {ks}.")
    eigen = output_feature_eigen(factors, sae_out, ids, k=max(ks), method="dense")  # lambda_ [n, K], v [n, K, d]
    width = len(ids) * len(ks)
    correlation = Correlation(width)
    selected = torch.tensor([k - 1 for k in ks])
    with _rows_bar(store, progress, "Fig. 9 correlation") as bar:
        for batch in store.batches(batch_size, shuffle=False):
            x = batch.activations[hook_in].to(factors.dtype)
            with torch.no_grad():
                y = factors.forward(x).to(sae_tensors(sae_out)[0].dtype)
                target = sae_out.encode(y)[:, ids].to(factors.dtype)
            x_aug = factors.augment(x)
            cumulative = (eigen.lambda_ * torch.einsum("td,nkd->tnk", x_aug, eigen.v).square()).cumsum(-1)
            approx = cumulative[:, :, selected].reshape(len(x), width)  # [t, n * len(ks)]
            targets = target.repeat_interleave(len(ks), dim=1)
            correlation.update(approx, targets, targets > 0)
            bar.update(len(x))
    if _is_share(store):
        correlation = merge_across_ranks(correlation)
    n_active = correlation.count().reshape(len(ids), len(ks))[:, 0]
    result = correlation.result().reshape(len(ids), len(ks))
    result[n_active <= min_active] = float("nan")
    return EigenApproximation(ids, ks, result, n_active)
