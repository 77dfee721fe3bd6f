"""One-pass statistics equal the in-memory results: top-k / bottom-k values and positions (`top_examples`),
densities, histograms, merged shares, and Fig. 9's correlation (`eigen_approximation`); two ranks give one
process's statistics, cache and feature rankings."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear import sae as S
from hooked_bilinear.activations.rankings import feature_table, rank_features
from hooked_bilinear.activations.stats import (
    Density,
    Histogram,
    TopK,
    column_statistics,
    eigen_approximation_stream,
    eigen_columns,
    examples,
    sae_columns,
)
from hooked_bilinear.activations.store import ActivationStore
from hooked_bilinear.analysis.features import (
    eigen_approximation,
    eigenvector_activations,
    hook_activations,
    output_feature_eigen,
    top_examples,
)

HOOK_IN, HOOK_OUT = "blocks.0.mlp.hook_in", "blocks.0.mlp.hook_out"


def test_top_and_bottom_k_of_eigenvector_projections_equal_top_examples(model, rows) -> None:
    sae_out = S.load(f"ts-synthetic-2l/{HOOK_OUT}")
    eigen = output_feature_eigen(model.blocks[0].mlp, sae_out, [0, 5, 9], k=4)  # 12 eigenvectors
    store = ActivationStore(model, rows, [HOOK_IN], model_batch_size=4, buffer_size=700, seed=2)
    stats = {}
    for kind in ("projection", "contribution"):
        columns = eigen_columns(model.blocks[0].mlp, eigen, kind=kind)
        top, bottom = TopK(12, 7), TopK(12, 7, largest=False)
        for batch in store.batches(300):  # shuffled: the order of the rows does not matter
            values = columns(batch.activations[HOOK_IN])
            top.update(values, batch.index)
            bottom.update(values, batch.index)
        stats[kind] = (top.result(), bottom.result())
    projections = eigenvector_activations(model, 0, eigen.v.reshape(12, -1), rows)  # [n_seq, pos, 12]
    contributions = eigen.lambda_.reshape(12) * projections.square()
    for kind, values in (("projection", projections), ("contribution", contributions)):
        top, bottom = stats[kind]
        for column in range(12):
            for result, sign in ((top, 1), (bottom, -1)):
                expected = top_examples(None, rows, sign * values[..., column], k=7)
                sequence, position = result.sequence_position(rows.shape[1])
                assert (sign * result.values[column]).tolist() == [e.value for e in expected]
                assert sequence[column].tolist() == [e.sequence for e in expected]
                assert position[column].tolist() == [e.position for e in expected]


def test_sae_feature_statistics_in_one_pass(model, rows) -> None:
    sae_in, sae_out = S.load(f"ts-synthetic-2l/{HOOK_IN}"), S.load(f"ts-synthetic-2l/{HOOK_OUT}")
    store = ActivationStore(model, rows, [HOOK_IN, HOOK_OUT], model_batch_size=5)
    edges = torch.tensor([0.0, 0.5, 1.0, 2.0])
    stats = column_statistics(
        store,
        {"in": (HOOK_IN, sae_columns(sae_in)), "out": (HOOK_OUT, sae_columns(sae_out))},
        k=5,
        edges=edges,
        batch_size=1000,
    )
    for name, sae, hook in (("in", sae_in, HOOK_IN), ("out", sae_out, HOOK_OUT)):
        with torch.no_grad():
            f = sae.encode(hook_activations(model, rows, hook))  # [n_seq, pos, d_sae]
        flat = f.reshape(-1, f.shape[-1])
        assert stats[name].rows == rows.numel()
        assert torch.equal(stats[name].density, (flat > 0).double().mean(0))
        brute = torch.stack(
            [(flat < edges[0]).sum(0)]
            + [((flat >= a) & (flat < b)).sum(0) for a, b in zip(edges[:-1], edges[1:])]
            + [(flat >= edges[-1]).sum(0)],
            1,
        )
        assert torch.equal(stats[name].histogram, brute)
        live = ((flat > 0).sum(0) >= 5).nonzero()[:, 0]  # ties at 0 are broken arbitrarily in both
        assert len(live) > 20
        for feature in live[:40].tolist():
            expected = top_examples(model.tokenizer, rows, f[..., feature], k=5)
            assert stats[name].top.values[feature].tolist() == [e.value for e in expected]
            assert examples(store, stats[name].top, feature) == expected  # values, places and the text around


def test_shares_merge_to_one_pass(model, rows) -> None:
    sae = S.load(f"ts-synthetic-2l/{HOOK_IN}")
    store = ActivationStore(model, rows, [HOOK_IN], model_batch_size=3)
    columns = sae_columns(sae, list(range(50)))
    whole, halves = [TopK(50, 6), Density(50)], [[TopK(50, 6), Density(50)] for _ in range(2)]
    hist = [Histogram(50, torch.linspace(0, 3, 7)) for _ in range(3)]
    for i, batch in enumerate(store.batches(256)):
        values = columns(batch.activations[HOOK_IN])
        for accumulator in (*whole, hist[0]):
            accumulator.update(values, batch.index)
        for accumulator in (*halves[i % 2], hist[1 + i % 2]):
            accumulator.update(values, batch.index)
    merged = halves[0][0].merge(halves[1][0]).result()
    assert torch.equal(merged.values, whole[0].result().values)
    assert torch.equal(halves[0][1].merge(halves[1][1]).result(), whole[1].result())
    assert torch.equal(hist[1].merge(hist[2]).result(), hist[0].result())
    with pytest.raises(ValueError, match="n_columns"):
        whole[0].update(torch.zeros(3, 49), torch.arange(3))


def test_fig9_correlation_from_a_stream(model, rows) -> None:
    mlp = model.blocks[0].mlp
    sae_out = S.load(f"ts-synthetic-2l/{HOOK_OUT}")
    features = list(range(0, 512, 8))
    store = ActivationStore(model, rows, [HOOK_IN], model_batch_size=4, buffer_size=1000)
    streamed = eigen_approximation_stream(mlp, sae_out, store, HOOK_IN, features, ks=(1, 2, 4), batch_size=500)
    x = hook_activations(model, rows, HOOK_IN).reshape(-1, model.cfg.d_model)
    expected = eigen_approximation(mlp, sae_out, x, features, ks=(1, 2, 4))
    assert torch.equal(streamed.n_active, expected.n_active)
    counted = expected.n_active > 10
    assert int(counted.sum()) > 10
    assert torch.equal(streamed.correlation.isnan(), expected.correlation.isnan())
    torch.testing.assert_close(streamed.correlation, expected.correlation, rtol=0, atol=1e-9, equal_nan=True)


def rank_worker(rank: int, world_size: int, port: int, tmp: str) -> None:
    """Each rank streams its share (every other forward batch), keeps top-k and densities, writes its cache shards;
    the accumulators are merged across ranks and rank 0 saves what it got."""
    import os
    import warnings

    import torch.distributed as dist

    import hooked_bilinear as hb
    from hooked_bilinear.activations.cache import finish_cache, write_cache
    from hooked_bilinear.activations.stats import merge_across_ranks

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hb.from_pretrained("ts-synthetic-2l")
    rows = two_process_rows(model)
    write_cache(ActivationStore(model, rows, [HOOK_IN], model_batch_size=2), f"{tmp}/cache2", shard_sequences=2)
    store = ActivationStore(model, rows, [HOOK_IN], model_batch_size=2, buffer_size=300, share=(rank, world_size))
    top, density = accumulate(store)
    top, density = merge_across_ranks(top), merge_across_ranks(density)
    both = ActivationStore(model, rows, [HOOK_IN, HOOK_OUT], model_batch_size=2, share=(rank, world_size))
    rankings = feature_rankings(model, both)  # column statistics and Fig. 9 merged across the ranks inside
    dist.barrier()
    if rank == 0:
        finish_cache(f"{tmp}/cache2", world_size)
        torch.save({"top": top.result(), "density": density.result(), "rankings": rankings}, f"{tmp}/ranks.pt")
    dist.destroy_process_group()


def feature_rankings(model, store) -> dict[str, list[int]]:
    """The output SAE's features ranked by each streamed statistic (`activations.rankings`)."""
    sae_out = S.load(f"ts-synthetic-2l/{HOOK_OUT}")
    stats = column_statistics(store, {"out": (HOOK_OUT, sae_columns(sae_out))}, k=3)["out"]
    features = list(range(0, 512, 8))
    approx = eigen_approximation_stream(model.blocks[0].mlp, sae_out, store, HOOK_IN, features, ks=(2,), min_active=2)
    table = feature_table(stats, approximation=approx)
    assert int((~table.correlation.isnan()).sum()) > 5
    return {
        by: rank_features(table, by, skip_dead=True).features.tolist()
        for by in ("density", "max_activation", "mean_active", "correlation")
    }


def two_process_rows(model) -> torch.Tensor:
    return torch.randint(5, model.cfg.d_vocab, (10, 32), generator=torch.Generator().manual_seed(3))


def accumulate(store):
    sae = S.load(f"ts-synthetic-2l/{HOOK_IN}")
    columns = sae_columns(sae, list(range(64)))
    top, density = TopK(64, 5), Density(64)
    for batch in store.batches(100):
        values = columns(batch.activations[HOOK_IN])
        top.update(values, batch.index)
        density.update(values)
    return top, density


@pytest.mark.slow
def test_two_ranks_give_the_statistics_and_cache_of_one(model, tmp_path) -> None:
    import torch.multiprocessing as mp

    from hooked_bilinear.activations.cache import write_cache
    from tests.distributed_runs import free_port

    mp.spawn(rank_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "ranks.pt", weights_only=False)
    rows = two_process_rows(model)
    top, density = accumulate(ActivationStore(model, rows, [HOOK_IN], model_batch_size=2))
    assert torch.equal(got["top"].values, top.result().values)
    active = top.result().values > 0  # among tied zeros the pick is torch.topk's
    assert active.sum() > 100
    assert torch.equal(got["top"].index[active], top.result().index[active])
    assert torch.equal(got["density"], density.result())
    one = feature_rankings(model, ActivationStore(model, rows, [HOOK_IN, HOOK_OUT], model_batch_size=2))
    assert got["rankings"] == one
    write_cache(ActivationStore(model, rows, [HOOK_IN], model_batch_size=2), tmp_path / "cache1", shard_sequences=2)
    for shard in sorted((tmp_path / "cache1").glob("shard-*")):
        assert shard.read_bytes() == (tmp_path / "cache2" / shard.name).read_bytes()
