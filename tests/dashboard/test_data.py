"""The numbers on the page are the package's numbers: read back from the HTML and checked against brute force."""

from __future__ import annotations

import torch

from hooked_bilinear.analysis import (
    contrast_directions,
    eigendecompose,
    eigenvector_activations,
    feature_interactions,
    interaction_matrix,
    mlp_factors,
    output_feature_directions,
    spectrum_stats,
    top_examples,
)
from hooked_bilinear.analysis.features import hook_activations
from hooked_bilinear.dashboard.data import CONTEXT_AFTER, CONTEXT_BEFORE, shown_components, unpack
from tests.dashboard.conftest import CONTEXTS, FEATURES, LAYER, TOKENS, Built


def direction_u(built: Built, index: int) -> torch.Tensor:
    """u of the index-th direction, rebuilt from the inputs (not from the page)."""
    if index < len(TOKENS):
        ids = built.model.tokenizer.convert_tokens_to_ids(TOKENS)
        return contrast_directions(built.model, ids)[index].double()
    return output_feature_directions(built.sae_out, [FEATURES[index - len(TOKENS)]])[0].double()


def all_contexts(direction: dict) -> list[dict]:
    found = list(direction["output"]["top"]) + list(direction["output"]["bottom"])
    for eigen in direction["eigen"]:
        found += eigen["top"] + eigen["bottom"]
    return found


def test_every_shown_position_sums_to_the_model_output(built: Built) -> None:
    """At each shown position: the k shown contributions plus the rest (each eigenpair's own) equal the total
    column, and the total is u . mlp(x) from the model's own hook_out, computed here independently."""
    out = hook_activations(built.model, built.tokens, f"blocks.{LAYER}.mlp.hook_out").double()
    data = built.data
    assert [d["label"] for d in data["directions"]] == TOKENS + [f"feature {j}" for j in FEATURES]
    checked = 0
    for index, direction in enumerate(data["directions"]):
        u = direction_u(built, index)
        columns = len(direction["eigen"]) + 2
        for context in all_contexts(direction):
            rows = unpack(context["c"], columns).double()
            positions = torch.arange(context["start"], context["start"] + len(context["ids"]))
            model_total = out[context["seq"], positions] @ u
            scale = model_total.abs().clamp_min(1e-3 * out.norm(dim=-1).max().item() * u.norm().item())
            assert ((rows[:, :-1].sum(-1) - rows[:, -1]).abs() <= 1e-4 * scale).all()
            assert ((rows[:, -1] - model_total).abs() <= 1e-4 * scale).all()
            assert context["ids"] == built.tokens[context["seq"], positions].tolist()
            checked += len(positions)
    assert checked > 500


def test_shown_columns_are_the_eigencomponents(built: Built) -> None:
    """Each shown column is lambda (v . x')^2 for the eigenpair of that lambda, by an independent eigh; the spectrum,
    its summary and the shares are the package's."""
    factors = mlp_factors(built.model, LAYER, dtype=torch.float64)
    x = hook_activations(built.model, built.tokens, f"blocks.{LAYER}.mlp.hook_in").double()
    for index, direction in enumerate(built.data["directions"]):
        lam, vectors = torch.linalg.eigh(interaction_matrix(factors, direction_u(built, index)))
        spectrum = torch.tensor(direction["spectrum"], dtype=torch.float64)
        assert torch.allclose(spectrum, lam.flip(0), rtol=1e-4, atol=1e-6 * lam.abs().max())
        stats = spectrum_stats(lam, k=len(direction["eigen"]))
        assert abs(direction["stats"]["effective_rank"] - stats.effective_rank.item()) <= 1e-3 * stats.effective_rank
        assert abs(direction["stats"]["balance"] - stats.balance.item()) <= 1e-4
        shown = [e["lambda"] for e in direction["eigen"]]
        by_magnitude = lam[lam.abs().argsort(descending=True)]
        assert torch.allclose(
            torch.tensor(shown, dtype=torch.float64),
            by_magnitude[shown_components(by_magnitude, len(shown))],
            rtol=1e-5,
        )
        columns = len(shown) + 2
        every = lam * (factors.augment(x.reshape(-1, x.shape[-1])) @ vectors).square()  # [N, d_in], brute force
        magnitude = every.abs().sum(0) / every.abs().sum()
        for slot, eigen in enumerate(direction["eigen"]):
            which = (lam - eigen["lambda"]).abs().argmin()
            v = vectors[:, which]
            assert abs(eigen["share"] - magnitude[which].item()) <= 1e-3 * magnitude[which].item() + 1e-6
            assert abs(eigen["mean"] - every[:, which].mean().item()) <= 1e-3 * abs(eigen["mean"]) + 1e-6
            canonical = v * torch.sign(v[v.abs().argmax()])  # eigendecompose's sign: largest entry positive
            projection = factors.augment(x.reshape(-1, x.shape[-1])) @ canonical
            histogram = eigen["histogram"]
            assert abs(histogram["low"] - projection.min().item()) <= 1e-4 * projection.abs().max().item()
            assert abs(histogram["high"] - projection.max().item()) <= 1e-4 * projection.abs().max().item()
            bins = len(histogram["counts"])
            counts = torch.histc(projection, bins=bins, min=histogram["low"], max=histogram["high"])
            assert sum(histogram["counts"]) == len(projection)
            assert (counts - torch.tensor(histogram["counts"], dtype=counts.dtype)).abs().sum() <= 4  # edges rounded
            for context in eigen["top"]:
                rows = unpack(context["c"], columns).double()
                positions = torch.arange(context["start"], context["start"] + len(context["ids"]))
                expected = lam[which] * (factors.augment(x[context["seq"], positions]) @ v).square()
                assert torch.allclose(rows[:, slot], expected, rtol=1e-4, atol=1e-5 * expected.abs().max())
        shares = sum(e["share"] for e in direction["eigen"])
        assert abs(shares - direction["stats"]["shown_share"]) <= 1e-3
        assert abs(direction["stats"]["shown_share"] + direction["rest_share"] - 1) <= 1e-3


def test_top_contexts_equal_top_examples(built: Built) -> None:
    """The top and bottom contexts of every eigenvector, and of the direction's output, are `top_examples` on the
    same tokens: the same positions, values and text."""
    tokenizer = built.model.tokenizer
    out = hook_activations(built.model, built.tokens, f"blocks.{LAYER}.mlp.hook_out").double()
    vocab = built.data["vocab"]

    def same(contexts: list[dict], values: torch.Tensor, sign: float) -> None:
        examples = top_examples(
            tokenizer, built.tokens, sign * values, k=CONTEXTS, context=CONTEXT_BEFORE, after=CONTEXT_AFTER
        )
        assert [(c["seq"], c["pos"]) for c in contexts] == [(e.sequence, e.position) for e in examples]
        for context, example in zip(contexts, examples):
            assert abs(context["value"] - sign * example.value) <= 1e-4 * max(abs(example.value), 1.0)
            words = [vocab[str(i)] for i in context["ids"]]
            at = context["pos"] - context["start"]
            assert (" ".join(words[:at]), words[at], " ".join(words[at + 1 :])) == (
                example.before,
                example.token,
                example.after,
            )

    for index, direction in enumerate(built.data["directions"]):
        u = direction_u(built, index)
        output = (out @ u).float()
        same(direction["output"]["top"], output, 1.0)
        same(direction["output"]["bottom"], output, -1.0)
        eigen = eigendecompose(mlp_factors(built.model, LAYER, dtype=torch.float64), u, None, method="dense")
        for shown in direction["eigen"]:
            v = eigen.v[shown["index"]][None]
            assert abs(eigen.lambda_[shown["index"]].item() - shown["lambda"]) <= 1e-5 * abs(shown["lambda"])
            projection = eigenvector_activations(built.model, LAYER, v, built.tokens)[..., 0].float()
            same(shown["top"], projection, 1.0)
            same(shown["bottom"], projection, -1.0)


def test_feature_interactions_and_pair_terms(built: Built) -> None:
    """The heat map is `D Q_u D^T`'s entries; each pair's context rows are its term `(2) M_ij f_i f_j`, f_i and
    f_j, with f the input SAE's features computed here."""
    factors = mlp_factors(built.model, LAYER, dtype=torch.float64)
    x = hook_activations(built.model, built.tokens, f"blocks.{LAYER}.mlp.hook_in")
    f = built.sae_in.encode(x).double()
    for index in range(len(TOKENS), len(TOKENS) + len(FEATURES)):
        direction = built.data["directions"][index]
        M = feature_interactions(factors, built.sae_in, direction_u(built, index))
        inter = direction["interactions"]
        ids = torch.tensor(inter["features"])
        assert torch.allclose(torch.tensor(inter["matrix"], dtype=torch.float64), M[ids][:, ids], rtol=1e-3, atol=1e-6)
        strongest = M.triu().abs().max().item()
        assert abs(abs(inter["pairs"][0]["value"]) - strongest) <= 1e-4 * strongest
        for pair in inter["pairs"]:
            i, j = pair["i"], pair["j"]
            assert abs(M[i, j].item() - pair["value"]) <= 1e-4 * abs(pair["value"])
            for context in pair["contexts"]:
                rows = unpack(context["c"], 3).double()
                positions = torch.arange(context["start"], context["start"] + len(context["ids"]))
                fi, fj = f[context["seq"], positions, i], f[context["seq"], positions, j]
                term = (1.0 if i == j else 2.0) * M[i, j] * fi * fj
                assert torch.allclose(rows[:, 0], term, rtol=1e-4, atol=1e-6)
                assert torch.allclose(rows[:, 1], fi, rtol=1e-5, atol=1e-6)
                assert torch.allclose(rows[:, 2], fj, rtol=1e-5, atol=1e-6)
    assert "interactions" not in built.data["directions"][0]


def test_shown_components_takes_both_signs() -> None:
    lam = torch.tensor([5.0, -4.0, 3.0, 2.0, -1.0, 0.5])
    assert shown_components(lam, 4) == [0, 2, 4, 1]  # two largest positive, two most negative, by lambda
    assert shown_components(torch.tensor([3.0, 2.0, 1.0, -0.5]), 4) == [0, 1, 2, 3]
    assert shown_components(torch.tensor([3.0, 2.0, 1.0, 0.5]), 2) == [0, 1]
