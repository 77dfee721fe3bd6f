"""Model-level directions and read-outs: output directions from the unembedding, top tokens of eigenvectors.

A token's logit is `W_U[:, t] . (w_f * x / rms(x)) (+ b_f . W_U[:, t])` for the final residual stream x and final
norm weight w_f (bias b_f in the legacy format). So the direction in the residual stream that raises token t is
`u_t = w_f * W_U[:, t]`. What this ignores: the positive per-position scale 1/rms(x) (it rescales every logit of a
position alike, so it changes no ranking or sign), the norm's bias (a constant, not something the MLP writes), and
the later layers (u_t reads the direct path from the MLP to the logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from beartype import beartype

from hooked_bilinear.analysis.checks import check_layer
from hooked_bilinear.analysis.factors import BilinearFactors, check_finite

Tokens = int | Sequence[int] | torch.Tensor | None


@beartype
def mlp_factors(model: Any, layer: int, dtype: torch.dtype | None = None) -> BilinearFactors:
    """The bilinear factors of `model.blocks[layer].mlp` (NotBilinearError for a gated or plain MLP).

    Args:
        model: a bridge from `from_pretrained` (anything with `blocks[layer].mlp`).
        layer: the block, 0..n_layers - 1.
        dtype: the dtype of the factors (default: the weights', float32 for half-precision weights).

    Returns:
        `BilinearFactors` (W_gate, W_in [d_in, d_hidden], W_out [d_hidden, d_out]; the biases folded into an
        augmented input when the layer has them).

    Raises:
        IndexError: the layer does not exist.
        NotBilinearError: the layer is a gated (GLU / SwiGLU) or plain MLP.
    """
    check_layer(model, layer)
    return BilinearFactors.from_mlp(model.blocks[layer].mlp, dtype=dtype, where=f"blocks.{layer}.mlp")


def _norm_weight(norm_component: Any) -> torch.Tensor | None:
    original = getattr(norm_component, "original_component", norm_component)
    weight = getattr(original, "weight", None)
    return None if weight is None else weight.detach()


def _token_ids(tokens: Tokens, vocab_size: int, device: torch.device) -> torch.Tensor:
    if tokens is None:
        return torch.arange(vocab_size, device=device)
    ids = torch.as_tensor(tokens, device=device).reshape(-1)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"tokens must be integer ids, got dtype {ids.dtype}.")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(
            f"tokens must lie in [0, {vocab_size}) (the model's vocabulary); got ids from {ids.min().item()} to "
            f"{ids.max().item()}."
        )
    return ids


@beartype
def unembedding_directions(model: Any, tokens: Tokens = None) -> torch.Tensor:
    """`u_t = w_f * W_U[:, t]` [n, d_model] for the given token ids (all of the vocabulary when None); see module doc.

    Args:
        model: a bridge from `from_pretrained` (its final norm's weight and unembedding are read).
        tokens: token id(s): an int, a sequence, a tensor, or None for the whole vocabulary.

    Returns:
        One direction per token, [n, d_model].
    """
    W_U = model.W_U.detach()  # [d_model, d_vocab]
    ids = _token_ids(tokens, W_U.shape[1], W_U.device)
    directions = W_U[:, ids].T
    weight = _norm_weight(model.ln_final)
    return directions if weight is None else directions * weight.to(directions.dtype)


@beartype
def contrast_directions(model: Any, tokens: Tokens = None) -> torch.Tensor:
    """`u_t - mean_{t' != t} u_t'` [n, d_model]: what raises token t relative to the rest of the vocabulary.

    Args:
        model: a bridge from `from_pretrained` (its final norm's weight and unembedding are read).
        tokens: token id(s): an int, a sequence, a tensor, or None for the whole vocabulary.

    Returns:
        One direction per token, [n, d_model] (n = 1 for a single id).
    """
    every = unembedding_directions(model)
    ids = _token_ids(tokens, every.shape[0], every.device)
    vocab = every.shape[0]
    others_mean = (every.sum(0, keepdim=True) - every[ids]) / (vocab - 1)
    return every[ids] - others_mean


class TokenTable(NamedTuple):
    """For each vector: the k tokens of highest and of lowest score, with the scores ([n, k] each)."""

    top_tokens: list[list[str]]
    top_scores: torch.Tensor
    bottom_tokens: list[list[str]]
    bottom_scores: torch.Tensor

    def __str__(self) -> str:
        lines = []
        for i, (top, bottom) in enumerate(zip(self.top_tokens, self.bottom_tokens)):
            lines.append(f"[{i}] + " + ", ".join(f"{t!r} {s:.2f}" for t, s in zip(top, self.top_scores[i].tolist())))
            lines.append("    - " + ", ".join(f"{t!r} {s:.2f}" for t, s in zip(bottom, self.bottom_scores[i].tolist())))
        return "\n".join(lines)


@beartype
def top_tokens(
    model: Any, vectors: torch.Tensor, k: int = 10, through: str = "unembed", layer: int | None = None
) -> TokenTable:
    """Read vectors [d] or [n, d] (d = d_model, or d_model + 1 for augmented eigenvectors: the constant is dropped)
    as tokens: through="unembed" scores `v . u_t` (the logits v would raise); through="embed" scores
    `v . (w_n * W_E[t])`, how much token t's embedding, through layer `layer`'s MLP input norm w_n, points along v
    (direct path only, rms scale ignored).

    Args:
        model: a bridge from `from_pretrained`.
        vectors: [d] or [n, d], e.g. eigenvectors `eig.v`.
        k: how many tokens at each end.
        through: "unembed" (the logits a vector raises) or "embed" (the tokens whose embedding points along it).
        layer: for through="embed", the layer whose MLP input norm the embedding passes.

    Returns:
        A `TokenTable`: per vector the k highest- and lowest-scoring tokens with their scores; `str()` prints it.

    Raises:
        ValueError: k < 1, or vectors of a size other than d_model (or d_model + 1).
    """
    if layer is not None:
        check_layer(model, layer)
    if k < 1:
        raise ValueError(f"k={k}: pass the number of tokens to list, at least 1.")
    vectors = vectors.reshape(-1, vectors.shape[-1]).detach()
    d_model = model.cfg.d_model
    if vectors.shape[-1] not in (d_model, d_model + 1):
        raise ValueError(f"vectors of size {vectors.shape[-1]} given; expected d_model={d_model} (or d_model+1).")
    check_finite(vectors, "the vectors to read out")
    vectors = vectors[:, :d_model].float()
    if through == "unembed":
        table = unembedding_directions(model).float()
    elif through == "embed":
        if layer is None:
            raise ValueError(
                "through='embed' reads an MLP's input space: pass layer= (the layer the vectors belong to)."
            )
        table = model.W_E.detach().float()
        weight = _norm_weight(model.blocks[layer].ln2)
        if weight is not None:
            table = table * weight.float()
    else:
        raise ValueError(f"through must be 'unembed' or 'embed', got {through!r}.")
    scores = vectors.to(table.device) @ table.T  # [n, vocab]
    k = min(k, scores.shape[1])
    top, bottom = scores.topk(k, dim=1), scores.topk(k, dim=1, largest=False)

    def names(ids: torch.Tensor) -> list[list[str]]:
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            return [[str(i) for i in row] for row in ids.tolist()]
        return [tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]

    return TokenTable(names(top.indices), top.values, names(bottom.indices), bottom.values)
