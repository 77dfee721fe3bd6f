"""u . out(x) == x'^T Q_u x' exactly; B and its Gram matrix equal their brute-force definitions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hooked_bilinear.analysis import BilinearFactors, interaction_matrix, output_gram, tensor
from hooked_bilinear.analysis.interaction import chunks, interaction_matrices, memory_budget
from tests.analysis.factories import brute_force_tensor, factors_of, mlp_forward, random_layer


@settings(max_examples=60, deadline=None)
@given(
    d_model=st.integers(1, 12),
    d_hidden=st.integers(1, 20),
    bias=st.booleans(),
    n=st.integers(1, 4),
    batched=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_quadratic_form_identity_float64(d_model, d_hidden, bias, n, batched, seed):
    layer = random_layer(d_model, d_hidden, bias, seed)
    factors = factors_of(layer)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(5, d_model, generator=g, dtype=torch.float64)
    u = torch.randn(n if batched else 1, d_model, generator=g, dtype=torch.float64)
    Q = interaction_matrix(factors, u if batched else u[0])
    Q = Q if batched else Q[None]
    x_aug = torch.cat([x, torch.ones(5, 1, dtype=x.dtype)], 1) if bias else x
    quadratic = torch.einsum("bi,nij,bj->bn", x_aug, Q, x_aug)
    expected = mlp_forward(layer, x) @ u.T
    torch.testing.assert_close(quadratic, expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(Q, Q.mT, atol=0, rtol=0)


@pytest.mark.parametrize("bias", [False, True])
def test_tensor_is_the_definition_and_contracts_to_Q(bias):
    layer = random_layer(6, 9, bias, seed=3)
    B = tensor(factors_of(layer))
    torch.testing.assert_close(B, brute_force_tensor(layer), atol=1e-12, rtol=1e-12)
    u = torch.randn(6, dtype=torch.float64)
    torch.testing.assert_close(interaction_matrix(factors_of(layer), u), torch.einsum("o,oij->ij", u, B))


def test_tensor_refuses_above_the_memory_limit():
    factors = factors_of(random_layer(8, 8, False))
    with pytest.raises(MemoryError, match="max_bytes=None"):
        tensor(factors, max_bytes=100)
    assert tensor(factors, max_bytes=None).shape == (8, 8, 8)


@pytest.mark.parametrize("bias", [False, True])
def test_output_gram_equals_the_unfolding_gram(bias):
    layer = random_layer(5, 11, bias, seed=4)
    B = brute_force_tensor(layer).flatten(1)
    torch.testing.assert_close(output_gram(factors_of(layer)), B @ B.T, atol=1e-12, rtol=1e-10)


def test_memory_budget_batches_give_the_same_matrices():
    layer = random_layer(7, 13, True, seed=5)
    u = torch.randn(9, 7, dtype=torch.float64)
    whole = interaction_matrix(factors_of(layer), u)
    tiny = interaction_matrix(factors_of(layer), u, max_memory=1)  # one direction at a time
    torch.testing.assert_close(whole, tiny, atol=1e-14, rtol=0)


def test_memory_budget_defaults_and_refusal():
    """The documented defaults (32 MiB on CPU, 2 GiB on CUDA), a given budget as it is, and no budget of 0 bytes."""
    assert memory_budget(torch.device("cpu"), None) == 32 * 2**20
    assert memory_budget(torch.device("cuda"), None) == 2 * 2**30
    assert memory_budget(torch.device("cpu"), 1) == 1
    for bad in (0, -5):
        with pytest.raises(ValueError, match=f"max_memory must be a positive number of bytes, got {bad}"):
            memory_budget(torch.device("cpu"), bad)


@pytest.mark.parametrize(
    "n, per_item, budget", [(10, 3, 7), (10, 1, 100), (3, 100, 10), (4, 1, 2), (5, 4, 20), (1, 9, 9)]
)
def test_chunks_cover_every_item_in_the_largest_ranges_the_budget_allows(n, per_item, budget):
    ranges = list(chunks(n, per_item, budget))
    assert [start for start, _ in ranges] == [0] + [stop for _, stop in ranges[:-1]], "contiguous"
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    # each range fits the budget (or is a single item), and is as large as the budget allows (but the last)
    fits = [(stop - start) * per_item <= budget or stop - start == 1 for start, stop in ranges]
    assert all(fits)
    largest = [(stop - start + 1) * per_item > budget for start, stop in ranges[:-1]]
    assert all(largest)


def recorded_ranges(monkeypatch) -> list[list[tuple[int, int]]]:
    """Every call of interaction's `chunks` from here on, as the list of ranges it yielded."""
    import hooked_bilinear.analysis.interaction as module

    calls: list[list[tuple[int, int]]] = []
    original = module.chunks

    def spy(n, per_item_bytes, budget):
        calls.append(list(original(n, per_item_bytes, budget)))
        return iter(calls[-1])

    monkeypatch.setattr(module, "chunks", spy)
    return calls


@pytest.mark.parametrize("d_hidden", [3, 20])
def test_batches_of_directions_fit_the_memory_given(monkeypatch, d_hidden):
    """A batch of b directions builds W_gate * c as [b, d_in, d_hidden] and A as [b, d_in, d_in]: with room for
    exactly 3 directions' worth, the directions go 3 at a time, and the matrices are those of one at a time."""
    layer = random_layer(7, d_hidden, True, seed=6)
    factors = factors_of(layer)
    u = torch.randn(8, 7, dtype=torch.float64)
    one_direction = (factors.d_in * factors.d_hidden + factors.d_in * factors.d_in) * 8  # bytes, float64
    calls = recorded_ranges(monkeypatch)
    Q = interaction_matrix(factors, u, max_memory=3 * one_direction)
    assert calls == [[(0, 3), (3, 6), (6, 8)]]
    expected = torch.einsum("no,oij->nij", u, brute_force_tensor(layer))
    torch.testing.assert_close(Q, expected, atol=1e-12, rtol=1e-10)
    assert interaction_matrix(factors, u).device == factors.device


def test_tensor_limit_is_the_size_of_B():
    """B of d_out x d_in x d_in float64 numbers is built at max_bytes = its size and refused one byte below, with
    both sizes in GiB in the message."""
    factors = factors_of(random_layer(160, 2, False))
    size = 160**3 * 8
    assert tensor(factors, max_bytes=size).shape == (160, 160, 160)
    with pytest.raises(MemoryError) as refused:
        tensor(factors, max_bytes=size - 1)
    assert "B would take 0.03 GiB (160 x 160 x 160 in torch.float64)" in str(refused.value)
    with pytest.raises(MemoryError) as refused:
        tensor(factors, max_bytes=2**24)
    message = str(refused.value)
    assert f"over the max_bytes limit of {2**24 / 2**30:.2f} GiB" in message and "0.02 GiB" in message
    assert message.endswith(
        "Use interaction_matrix / eigendecompose / hosvd, which work from the low-rank factors, or pass "
        "max_bytes=None to build it anyway."
    )


def test_interaction_matrices_are_built_on_the_factors_device():
    """On the factors' device (here "meta", a device without data, standing in for CUDA): no copy to the CPU."""
    f = factors_of(random_layer(4, 5, False))
    meta = BilinearFactors(f.W_gate.to("meta"), f.W_in.to("meta"), f.W_out.to("meta"), f.augmented)
    Q = interaction_matrices(meta, torch.ones(3, 5, dtype=torch.float64, device="meta"))
    assert Q.device.type == "meta" and Q.shape == (3, 4, 4)
