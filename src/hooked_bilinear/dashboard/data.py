"""The data a language-model dashboard embeds: read from one bilinear MLP's weights plus one pass over a token set.

For an output direction u of layer l's MLP, `u . mlp(x) = x'^T Q_u x' = sum_k lambda_k (v_k . x')^2` over all d_in
eigencomponents of Q_u (x' = [x, 1] for layers with biases). For each direction the dashboard keeps:

- the whole spectrum and its summary (`spectrum_stats`: effective rank, top-k share, balance);
- k shown eigencomponents (the k/2 largest positive and k/2 most negative eigenvalues, topped up by |lambda|), each
  with its share of the direction's output on the token set (`sum_t |c_k(t)| / sum_t sum_j |c_j(t)|` with
  `c_k(t) = lambda_k (v_k . x'_t)^2`), its mean contribution, its top and bottom contexts by the projection
  `v_k . x'` (both signs raise `(v . x')^2`), and its token read-outs through the unembedding and the embedding;
- at every position of every shown context, one row of k + 2 numbers: the k shown contributions, the sum of the
  other d_in - k contributions (each computed from its own eigenpair), and `u . mlp(x)` as the model's own
  `blocks.{l}.mlp.hook_out` gives it: the first k + 1 sum to the last (the dashboard's tests check it);
- for an SAE output feature with an input SAE: the strongest entries of `D Q_u D^T` and, for its top pairs of
  input features, the contexts where their term `(2 -) M_ij f_i f_j` of `u . mlp(x_hat)` is largest.

Numbers that are only read are rounded to 5 significant digits; the per-token rows are float32, base64-encoded.
"""

from __future__ import annotations

import base64
import difflib
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from beartype import beartype
from tqdm.auto import tqdm

from hooked_bilinear.analysis.eigen import eigendecompose
from hooked_bilinear.analysis.factors import BilinearFactors
from hooked_bilinear.analysis.features import (
    _check_width,
    feature_indices,
    feature_interactions,
    output_feature_directions,
    output_feature_offsets,
    top_examples,
    top_interactions,
)
from hooked_bilinear.analysis.readout import contrast_directions, mlp_factors, top_tokens, unembedding_directions
from hooked_bilinear.analysis.spectrum import spectrum_stats
from hooked_bilinear.errors import DashboardError, DatasetError, SAEError

CONTEXT_BEFORE = 10  # tokens shown before the token a context is about
CONTEXT_AFTER = 3  # and after it
READOUT_TOKENS = 6
PAIRS = 6  # top interacting input-feature pairs per SAE output feature
PAIR_CONTEXTS = 4
HEATMAP_FEATURES = 14
HISTOGRAM_BINS = 40
POSITION_CHUNK = 4096  # positions per block of the all-components pass


class Direction(NamedTuple):
    """One output direction to show: kind ("token", "contrast" or "feature"), its label, and u [d_out]."""

    kind: str
    label: str
    u: torch.Tensor


class TokenPass(NamedTuple):
    """What one pass over the token set caches at the layer: MLP inputs x [n_seq, pos, d_model], MLP outputs
    [n_seq, pos, d_out], and the input SAE's feature activations [n_seq, pos, d_sae] (None without one)."""

    x: torch.Tensor
    out: torch.Tensor
    f: torch.Tensor | None


def _num(value: float | torch.Tensor, digits: int = 5) -> float | None:
    """A float rounded to `digits` significant digits for display; None (JSON null) for NaN / inf."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _nums(values: torch.Tensor, digits: int = 5) -> list[float | None]:
    return [_num(v, digits) for v in values.reshape(-1).tolist()]


def pack(rows: torch.Tensor) -> str:
    """A float tensor as base64 of its little-endian float32 bytes (the page decodes it into a Float32Array)."""
    return base64.b64encode(rows.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()).decode()


def unpack(text: str, columns: int) -> torch.Tensor:
    """The inverse of `pack`: [rows, columns] float32."""
    import numpy as np

    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype="<f4").copy()).reshape(-1, columns)


def check_layer(model: Any, layer: int) -> None:
    """DashboardError unless `model.blocks[layer]` exists."""
    n = len(model.blocks)
    if not 0 <= layer < n:
        raise DashboardError(f"layer {layer} does not exist: this model has layers 0..{n - 1}; pass one of them.")


def check_tokens(model: Any, tokens: torch.Tensor) -> None:
    """DatasetError unless tokens are integer ids [n_seq, pos] inside the vocabulary."""
    if tokens.ndim != 2 or tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.numel() == 0:
        raise DatasetError(
            f"tokens must be a non-empty integer tensor [n_seq, pos], got {tuple(tokens.shape)} {tokens.dtype}."
        )
    vocab = model.cfg.d_vocab
    if tokens.min() < 0 or tokens.max() >= vocab:
        raise DatasetError(
            f"token ids must lie in [0, {vocab}) for this model; got range [{tokens.min()}, {tokens.max()}]."
        )


def check_sae(sae: Any, factors: BilinearFactors, layer: int, side: str) -> None:
    """SAEError unless the SAE reads this layer's MLP `side` ("input": hook_in, "output": hook_out) at its width."""
    hook = f"blocks.{layer}.mlp.hook_{'in' if side == 'input' else 'out'}"
    name = getattr(sae, "hook_name", None)
    if name is not None and name != hook:
        raise SAEError(
            f"the {side} SAE reads {name!r}, but the dashboard of layer {layer} needs an SAE on {hook!r}: pass "
            f"the SAE trained on that hook (e.g. hooked_bilinear.sae.load('<model>/{hook}'))."
        )
    _check_width(sae, factors, side)


def token_id(model: Any, token: str | int) -> int:
    """A direction's token as an id: an int in the vocabulary, or a token string the tokenizer knows (exactly)."""
    vocab = model.cfg.d_vocab
    if isinstance(token, int):
        if not 0 <= token < vocab:
            raise DashboardError(f"token id {token} is not in the vocabulary (ids 0..{vocab - 1}).")
        return token
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise DashboardError(f"direction {token!r}: the model has no tokenizer, so pass token ids instead of strings.")
    known = tokenizer.get_vocab()
    if token not in known:
        near = difflib.get_close_matches(token, list(known), n=3)
        hint = f" (close: {', '.join(map(repr, near))})" if near else ""
        raise DashboardError(
            f"direction {token!r} is not a token of this model's vocabulary{hint}: pass tokens as the tokenizer "
            "writes them (e.g. '##s' for a word piece) or token ids."
        )
    return int(known[token])


@beartype
def resolve_directions(
    model: Any,
    directions: Sequence[str | int] | None,
    *,
    contrast: bool = True,
    features: Sequence[int] | None = None,
    sae_out: Any = None,
) -> list[Direction]:
    """The directions to show, checked against the vocabulary and the SAE.

    Args:
        model: the bridge.
        directions: tokens (as the tokenizer writes them, or ids).
        contrast: `contrast_directions` of the tokens (True) or `unembedding_directions`.
        features: output features of sae_out (their encoder rows e_j, `output_feature_directions`).
        sae_out: the output SAE.

    Returns:
        The directions, tokens first.

    Raises:
        DashboardError: a token the vocabulary lacks, a feature the SAE lacks, features without an SAE, or nothing.
    """
    found: list[Direction] = []
    ids = [token_id(model, token) for token in directions or []]
    if ids:
        tokenizer = getattr(model, "tokenizer", None)
        names = tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [str(i) for i in ids]
        table = contrast_directions(model, ids) if contrast else unembedding_directions(model, ids)
        kind = "contrast" if contrast else "token"
        found += [Direction(kind, name, row) for name, row in zip(names, table.detach())]
    if features:
        if sae_out is None:
            raise DashboardError(
                "SAE output features were asked for, but no output SAE was given: pass sae_out= (an SAE on "
                "blocks.{layer}.mlp.hook_out)."
            )
        try:
            ids_f = feature_indices(sae_out, list(features))
        except IndexError as error:
            raise DashboardError(f"{error} Pass features of the output SAE.") from error
        rows = output_feature_directions(sae_out, ids_f).detach()
        found += [Direction("feature", f"feature {j}", row) for j, row in zip(ids_f.tolist(), rows)]
    if not found:
        raise DashboardError("no directions to show: pass tokens (directions=) and/or SAE output features (features=).")
    return found


def token_pass(
    model: Any, layer: int, tokens: torch.Tensor, sae_in: Any = None, batch_size: int = 32, progress: bool = False
) -> TokenPass:
    """One pass over the token set.

    Args:
        model: the bridge.
        layer: the MLP layer.
        tokens: token ids [n_seq, pos].
        sae_in: an SAE on the MLP's input, whose features are kept too (None: none).
        batch_size: sequences per forward pass.
        progress: a tqdm bar.

    Returns:
        The MLP's inputs and outputs at every position, and the input SAE's features.
    """
    hook_in, hook_out = f"blocks.{layer}.mlp.hook_in", f"blocks.{layer}.mlp.hook_out"
    xs, outs, fs = [], [], []
    with torch.no_grad():
        for start in tqdm(range(0, tokens.shape[0], batch_size), desc="token pass", disable=not progress):
            _, cache = model.run_with_cache(
                tokens[start : start + batch_size], names_filter=lambda n: n in (hook_in, hook_out), return_type=None
            )
            xs.append(cache[hook_in])
            outs.append(cache[hook_out])
            if sae_in is not None:
                fs.append(sae_in.encode(cache[hook_in].to(sae_in.W_enc.dtype)))
    return TokenPass(torch.cat(xs), torch.cat(outs), torch.cat(fs) if fs else None)


def _top_contexts(tokenizer: Any, tokens: torch.Tensor, values: torch.Tensor, n: int) -> list[tuple[int, int, float]]:
    """(sequence, position, value) of the n largest values [n_seq, pos], by `top_examples`.

    This is the one place the dashboard ranks positions over the token set; it holds every value in memory. Issue
    28's streaming top-k statistics (the dataset-scale `activations` module) can replace it without touching the
    rest: anything returning the same triples, largest first, will do.
    """
    return [(e.sequence, e.position, e.value) for e in top_examples(tokenizer, tokens, values, k=n, context=0, after=0)]


def spectrum_summary(lam: torch.Tensor, k: int) -> dict[str, Any]:
    """A whole spectrum's summary [d] for the page: `spectrum_stats` (top-k share for k = min(k, d)) and its
    extremes."""
    stats = spectrum_stats(lam, k=min(k, len(lam)))
    return {
        "effective_rank": _num(stats.effective_rank),
        "top_k_share": _num(stats.top_k_mass),
        "balance": _num(stats.balance),
        "lambda_max": _num(lam.max()),
        "lambda_min": _num(lam.min()),
    }


def shown_components(lambda_: torch.Tensor, k: int) -> list[int]:
    """Indices (into a spectrum sorted by |lambda| descending) of the k/2 largest positive and k/2 most negative
    eigenvalues; when one sign has fewer, the rest by |lambda|. Ordered by lambda, descending."""
    k = min(k, len(lambda_))
    positive = [i for i in lambda_.argsort(descending=True).tolist() if lambda_[i] > 0][: k - k // 2]
    negative = [i for i in lambda_.argsort().tolist() if lambda_[i] < 0][: k // 2]
    chosen = set(positive + negative)
    for i in range(len(lambda_)):
        if len(chosen) >= k:
            break
        chosen.add(i)
    return sorted(chosen, key=lambda i: -float(lambda_[i]))


class _Context:
    """Builds context records: a window of token ids around (sequence, position) and its per-token rows."""

    def __init__(self, tokens: torch.Tensor, rows: torch.Tensor, used: set[int]) -> None:
        self.tokens, self.rows, self.used = tokens, rows, used

    def __call__(self, sequence: int, position: int, value: float, rows: torch.Tensor | None = None) -> dict:
        start = max(0, position - CONTEXT_BEFORE)
        stop = min(self.tokens.shape[1], position + CONTEXT_AFTER + 1)
        ids = self.tokens[sequence, start:stop].tolist()
        self.used.update(ids)
        table = self.rows if rows is None else rows
        return {
            "seq": sequence,
            "pos": position,
            "start": start,
            "value": _num(value, 6),
            "ids": ids,
            "c": pack(table[sequence, start:stop]),
        }


def _histogram(values: torch.Tensor) -> dict:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1.0
    counts = torch.histc(values.double(), bins=HISTOGRAM_BINS, min=low, max=high)
    return {"low": _num(low), "high": _num(high), "counts": [int(c) for c in counts.tolist()]}


def _readout(model: Any, layer: int, v: torch.Tensor) -> list[dict]:
    unembed = top_tokens(model, v, k=READOUT_TOKENS, through="unembed")
    embed = top_tokens(model, v, k=READOUT_TOKENS, through="embed", layer=layer)
    out = []
    for i in range(v.shape[0]):
        out.append(
            {
                table_name: {
                    "top": [[t, _num(s, 3)] for t, s in zip(table.top_tokens[i], table.top_scores[i].tolist())],
                    "bottom": [
                        [t, _num(s, 3)] for t, s in zip(table.bottom_tokens[i], table.bottom_scores[i].tolist())
                    ],
                }
                for table_name, table in (("unembed", unembed), ("embed", embed))
            }
        )
    return out


def direction_data(
    model: Any,
    layer: int,
    factors: BilinearFactors,
    direction: Direction,
    tokens: torch.Tensor,
    cached: TokenPass,
    *,
    k: int,
    n_contexts: int,
    used: set[int],
    sae_in: Any = None,
    offset: float | None = None,
) -> dict:
    """Everything the page shows of one direction (see the module doc).

    Args:
        model: the bridge.
        layer: the MLP layer.
        factors: its factors (float64).
        direction: the direction.
        tokens: token ids [n_seq, pos] of the pass.
        cached: the pass (`token_pass`).
        k: eigenvectors shown.
        n_contexts: top and bottom contexts per eigenvector.
        used: collects the token ids shown (for the page's vocabulary).
        sae_in: the input SAE, for a feature's interactions.
        offset: an output feature's pre-activation offset.

    Returns:
        The direction's JSON-ready record.
    """
    tokenizer = getattr(model, "tokenizer", None)
    n_seq, n_pos = tokens.shape
    u = direction.u.to(factors.dtype)
    eigen = eigendecompose(factors, u, None, method="dense")  # all d_in pairs: the rest column needs each of them
    lam, v = eigen.lambda_, eigen.v
    x = cached.x.reshape(-1, cached.x.shape[-1])
    output = cached.out.reshape(-1, cached.out.shape[-1]).to(u.dtype) @ u  # the model's own u . mlp(x)
    shown = shown_components(lam, k)
    rest = torch.ones(len(lam), dtype=torch.bool)
    rest[shown] = False
    # positions in chunks, so that no [N, d_in] table is held: per position the shown contributions and the rest's
    # sum, per component the sum of |contribution| over the token set
    projection = torch.empty(len(x), len(shown), dtype=lam.dtype, device=lam.device)
    rest_sum = torch.empty(len(x), dtype=lam.dtype, device=lam.device)
    magnitude = torch.zeros_like(lam)
    for start in range(0, len(x), POSITION_CHUNK):
        part = factors.augment(x[start : start + POSITION_CHUNK]) @ v.T  # [chunk, d_in]
        terms = lam * part.square()
        projection[start : start + POSITION_CHUNK] = part[:, shown]
        rest_sum[start : start + POSITION_CHUNK] = terms[:, rest].sum(-1)
        magnitude += terms.abs().sum(0)
    contribution = lam[shown] * projection.square()  # [N, k]
    rows = torch.cat([contribution, rest_sum[:, None], output[:, None]], dim=1).reshape(n_seq, n_pos, -1)
    context = _Context(tokens, rows, used)
    share = magnitude / magnitude.sum().clamp_min(torch.finfo(magnitude.dtype).tiny)
    readouts = _readout(model, layer, v[shown])
    eigen_rows = []
    for slot, index in enumerate(shown):
        p = projection[:, slot].reshape(n_seq, n_pos)
        top = [context(s, q, val) for s, q, val in _top_contexts(tokenizer, tokens, p, n_contexts)]
        bottom = [context(s, q, -val) for s, q, val in _top_contexts(tokenizer, tokens, -p, n_contexts)]
        eigen_rows.append(
            {
                "index": index,
                "column": slot,
                "lambda": _num(lam[index], 6),
                "share": _num(share[index], 4),
                "mean": _num(contribution[:, slot].mean(), 4),
                "top": top,
                "bottom": bottom,
                "histogram": _histogram(projection[:, slot]),
                "readout": readouts[slot],
            }
        )
    o = output.reshape(n_seq, n_pos)
    data: dict[str, Any] = {
        "kind": direction.kind,
        "label": direction.label,
        "stats": {
            **spectrum_summary(lam, k),
            "shown_share": _num(share[shown].sum(), 4),
            "mean_output": _num(output.mean()),
            "max_output": _num(output.max()),
            "min_output": _num(output.min()),
        },
        "spectrum": _nums(lam.sort(descending=True).values),
        "eigen": eigen_rows,
        "rest_share": _num(share[rest].sum(), 4),
        "output": {
            "top": [context(s, q, val) for s, q, val in _top_contexts(tokenizer, tokens, o, n_contexts)],
            "bottom": [context(s, q, -val) for s, q, val in _top_contexts(tokenizer, tokens, -o, n_contexts)],
            "histogram": _histogram(output),
        },
    }
    if offset is not None:
        data["stats"]["offset"] = _num(offset)
    if direction.kind == "feature" and sae_in is not None and cached.f is not None:
        data["interactions"] = interaction_data(model, factors, u, sae_in, tokens, cached.f, context)
    return data


def interaction_data(
    model: Any,
    factors: BilinearFactors,
    u: torch.Tensor,
    sae_in: Any,
    tokens: torch.Tensor,
    f: torch.Tensor,
    context: _Context,
) -> dict:
    """`D Q_u D^T`'s strongest entries (a heat map over the features they involve) and the top pairs with the
    contexts where their term of `u . mlp(x_hat)` is largest (rows: term, f_i, f_j)."""
    tokenizer = getattr(model, "tokenizer", None)
    M = feature_interactions(factors, sae_in, u)
    pairs = top_interactions(M, k=PAIRS, include_self=True)
    features: list[int] = []
    strongest = top_interactions(M, k=4 * HEATMAP_FEATURES, include_self=True)
    for a, b in zip(pairs.i.tolist() + strongest.i.tolist(), pairs.j.tolist() + strongest.j.tolist()):
        for feature in (a, b):
            if feature not in features and len(features) < HEATMAP_FEATURES:
                features.append(feature)
    features.sort()
    index = torch.tensor(features)
    norm = M.square().sum().sqrt().clamp_min(torch.finfo(M.dtype).tiny)
    flat = f.to(M.dtype)
    pair_rows = []
    for a, b, value in zip(pairs.i.tolist(), pairs.j.tolist(), pairs.value.tolist()):
        term = (1.0 if a == b else 2.0) * value * flat[..., a] * flat[..., b]  # [n_seq, pos]
        rows = torch.stack([term, flat[..., a], flat[..., b]], dim=-1)
        ranked = _top_contexts(tokenizer, tokens, term * (1.0 if value >= 0 else -1.0), PAIR_CONTEXTS)
        pair_rows.append(
            {
                "i": a,
                "j": b,
                "value": _num(value),
                "share": _num(((1 if a == b else 2) * value**2) ** 0.5 / norm, 3),
                "both_active": int(((flat[..., a] > 0) & (flat[..., b] > 0)).sum()),
                "contexts": [context(s, q, val * (1.0 if value >= 0 else -1.0), rows) for s, q, val in ranked],
            }
        )
    labels = {}
    for feature in sorted(set(features) | {p["i"] for p in pair_rows} | {p["j"] for p in pair_rows}):
        ranked = _top_contexts(tokenizer, tokens, flat[..., feature].float(), 5)
        ids = [int(tokens[s, q]) for s, q, val in ranked if val > 0]
        context.used.update(ids)
        labels[str(feature)] = ids
    return {
        "features": features,
        "matrix": [_nums(row, 4) for row in M[index][:, index]],
        "norm": _num(norm),
        "pairs": pair_rows,
        "feature_tokens": labels,
    }


def vocabulary(model: Any, ids: set[int]) -> dict[str, str]:
    """Token strings of the ids shown, keyed by id (as JSON keys are strings)."""
    ordered = sorted(ids)
    tokenizer = getattr(model, "tokenizer", None)
    names = tokenizer.convert_ids_to_tokens(ordered) if tokenizer is not None else [str(i) for i in ordered]
    return {str(i): str(name) for i, name in zip(ordered, names)}


def layer_factors(model: Any, layer: int) -> BilinearFactors:
    """The layer's factors in float64 (NotBilinearError for a gated or plain MLP)."""
    return mlp_factors(model, layer, dtype=torch.float64)


def feature_offsets(sae_out: Any, directions: list[Direction]) -> dict[str, float]:
    """`output_feature_offsets` of the feature directions, by label."""
    ids = [int(d.label.split()[-1]) for d in directions if d.kind == "feature"]
    if not ids:
        return {}
    offsets = output_feature_offsets(sae_out, ids).tolist()
    return {f"feature {j}": float(o) for j, o in zip(ids, offsets)}
