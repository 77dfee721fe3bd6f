"""The logits of the one-layer modular-addition model as an exact sum of terms, read from the weights (as balls).

At the last position the residual stream entering the MLP is

    x(a, b) = W_E[t_last] + s sum_h sum_j A^h_j(a, b) W_O^h W_V^h W_E[t_j]

(no normalization, no biases), with A^h_j the attention of head h from the last position to position j. Grouped by
what they depend on, x = sum_f coef_f(a, b) v_f[i_f], with families f whose vectors are indexed by a, by b, or by
nothing ("1"). The logits are then exactly

    logit_c = sum_f coef_f W_U[c] . v_f  +  sum_{f, g} coef_f coef_g sum_n U'[c, n] (W_gate v_f)_n (W_in v_g)_n,

U' = W_U W_out. Pairs of an a-family with a b-family are the (a, b) interaction tensors, the part an adding network
must compute; every other pair depends on (a, c) or (b, c) only, through a table. With uniform attention the
coefficients are constants (1 / n_pos) and the families merge into one per kind.

`exact_logits` sums these terms over the whole (a, b) grid; `circuit_logits` evaluates the same logits input by
input from the families' projections (the uncompressed proof's arithmetic).
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int

from hooked_bilinear.modeling.configuration import split_gate_in
from hooked_bilinear.modeling.modeling import BilinearForCausalLM
from hooked_bilinear.toy.modadd import interval as iv
from hooked_bilinear.toy.modadd.interval import Ball, Ledger
from hooked_bilinear.toy.modadd.task import ModAddTask
from hooked_bilinear.toy.modadd.train import require_modadd_architecture

Kind = Literal["a", "b", "1"]
FLOAT32_REL = 2.0**-23  # covers a constant rounded to float32 by the float32 model


@dataclass
class Family:
    """Residual-stream vectors `v` [n, d] indexed by a (n=p), b (n=p) or nothing (n=1), times `coef` (scalar or
    [p, p] over (a, b)); with their gate, in and unembedding projections."""

    kind: Kind
    name: str
    vectors: Ball
    coef: Ball
    gate: Ball | None = None  # [n, d_hidden]  W_gate v
    linear: Ball | None = None  # [n, d_hidden]  W_in v
    direct: Ball | None = None  # [n, vocab]     W_U v

    def grid(self, ball: Ball | None) -> Ball:
        """A [n, ...] family table laid on the (a, b) grid: [p, 1, ...], [1, p, ...] or [1, 1, ...]."""
        ball = known(ball)
        axis = {"a": 1, "b": 0, "1": 0}[self.kind]
        return ball.map(lambda t: t.unsqueeze(axis))


def known(ball: Ball | None) -> Ball:
    """A family's projection, which read_circuit fills in before any table is built from it."""
    if ball is None:
        raise ValueError("this family's gate / in / unembedding projections are not read yet (read_circuit does it).")
    return ball


@dataclass
class Circuit:
    """Everything the logits are made of, as balls containing the exact reals."""

    task: ModAddTask
    families: list[Family]
    unembed_out: Ball  # [vocab, d_hidden]  U' = W_U W_out
    uniform_attention: bool
    # [vocab] or scalar: how far each logit can move between the families' midpoint coefficients and the exact ones
    # (uniform attention: the float32 rounding of the constant s / n_pos, bounded once by norms; `scale_slack`)
    slack: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))


def _weights(model: BilinearForCausalLM, task: ModAddTask) -> dict[str, torch.Tensor]:
    config = model.config
    require_modadd_architecture(config, "the modular-addition circuit")
    if config.vocab_size != task.vocab_size:
        raise ValueError(
            f"the model's vocabulary has {config.vocab_size} tokens but {task} needs {task.vocab_size} (the residues "
            f"0..p-1{' and =' if task.has_equals else ''}); pass the task the model was trained on."
        )
    block = model.transformer.blocks[0]
    d = config.d_model
    qkv = block.attn.qkv.weight.detach()
    W_gate, W_in = split_gate_in(block.mlp.w.weight.detach(), dim=0)
    return {
        "W_E": model.transformer.wte.weight.detach(),
        "W_Q": qkv[:d],
        "W_K": qkv[d : 2 * d],
        "W_V": qkv[2 * d :],
        "W_O": block.attn.o.weight.detach(),
        "W_gate": W_gate,
        "W_in": W_in,
        "W_out": getattr(block.mlp, config.mlp_down_name).weight.detach(),
        "W_U": model.lm_head.weight.detach(),
        "inv_freq": model.transformer.rotary_emb.inv_freq.detach(),
    }


def _rotate(x: Ball, pos: int, inv_freq: torch.Tensor, ledger: Ledger) -> Ball:
    """Rotary embedding at position `pos` (rotate-half convention) of head vectors x [..., d_head]."""
    if pos == 0:
        return x
    angles = pos * inv_freq.to(torch.float64)  # exact: pos is a small integer, inv_freq a float32
    angles = torch.cat([angles, angles])
    cos, sin = (iv.trig(angles, fn, ledger, rad=FLOAT32_REL) for fn in ("cos", "sin"))
    half = x.mid.shape[-1] // 2
    rotated = x.map(lambda t: torch.cat([-t[..., half:], t[..., :half]], dim=-1))
    return iv.add(iv.mul(x, cos, ledger), iv.mul(rotated, sin, ledger), ledger)


def grid(ball: Ball, kind: Kind) -> Ball:
    """A per-token table [n, ...] laid on the (a, b) grid: [p, 1, ...] (a), [1, p, ...] (b) or [1, 1, ...] (1)."""
    return ball.map(lambda t: t.unsqueeze(1 if kind == "a" else 0))


def _token_kinds(task: ModAddTask) -> list[Kind]:
    """What the token at each position is: a, b, then '=' (a constant)."""
    return ["a", "b", "1"] if task.has_equals else ["a", "b"]


def _rows(W: torch.Tensor, kind: Kind, task: ModAddTask) -> Ball:
    """Rows of an embedding-indexed matrix for a position's token: residues 0..p-1, or the '=' row."""
    return Ball.exact(W[: task.p] if kind != "1" else W[task.p : task.p + 1])


def _attention(weights: dict[str, torch.Tensor], task: ModAddTask, n_head: int, ledger: Ledger) -> list[list[Ball]]:
    """A[h][j]: attention of head h from the last position to position j, as [p, p] balls over (a, b)."""
    d = weights["W_Q"].shape[0]
    d_head = d // n_head
    kinds = _token_kinds(task)
    scale = Ball(
        torch.tensor(d_head**-0.5, dtype=torch.float64), torch.tensor(d_head**-0.5 * FLOAT32_REL, dtype=torch.float64)
    )
    pattern = []
    for head in range(n_head):
        rows = slice(head * d_head, (head + 1) * d_head)

        def rotated(W: str, pos: int, rows: slice = rows) -> Ball:
            x = iv.einsum("td,ed->te", _rows(weights["W_E"], kinds[pos], task), Ball.exact(weights[W][rows]), ledger)
            return grid(_rotate(x, pos, weights["inv_freq"], ledger), kinds[pos])

        q = rotated("W_Q", task.n_pos - 1)
        scores = [
            iv.mul(iv.sum_(iv.mul(q, rotated("W_K", pos), ledger), -1, ledger), scale, ledger)
            for pos in range(task.n_pos)
        ]
        pattern.append([_softmax_entry(scores, j, ledger) for j in range(task.n_pos)])
    return pattern


def _softmax_entry(scores: list[Ball], j: int, ledger: Ledger) -> Ball:
    """softmax_j = 1 / sum_l exp(score_l - score_j), as a [p, p] ball."""
    total: Ball | float = 0.0
    for score in scores:
        total = iv.add(total, iv.exp(iv.sub(score, scores[j], ledger), ledger), ledger)
    if not isinstance(total, Ball):
        raise ValueError("a softmax needs at least one score.")
    return iv.reciprocal(total, ledger)


def read_circuit(model: BilinearForCausalLM, task: ModAddTask, ledger: Ledger) -> Circuit:
    """The families of the residual stream at the last position and their MLP / unembedding projections."""
    config = model.config
    weights = _weights(model, task)
    n_head, d_head = config.n_head, config.d_head
    kinds = _token_kinds(task)
    uniform = not (weights["W_Q"].any() and weights["W_K"].any())  # every score exactly 0
    pattern = None if uniform else _attention(weights, task, n_head, ledger)
    scale = Ball(
        torch.tensor(config.attn_residual_scale, dtype=torch.float64),
        torch.tensor(config.attn_residual_scale * FLOAT32_REL, dtype=torch.float64),
    )
    families = [Family(kinds[-1], "W_E[last]", _rows(weights["W_E"], kinds[-1], task), Ball.exact(torch.tensor(1.0)))]
    if uniform:  # every head and position has the constant coefficient s / n_pos: merge heads before reading tokens
        W_OV = iv.einsum("oe,ed->od", Ball.exact(weights["W_O"]), Ball.exact(weights["W_V"]), ledger)
        coef = iv.mul(scale, Ball.exact(torch.tensor(1.0 / task.n_pos)), ledger)
        read: dict[str, Ball] = {}
        for pos, kind in enumerate(kinds):
            key = "residues" if kind != "1" else "="
            if key not in read:  # a and b read the same embedding rows
                read[key] = iv.einsum("td,od->to", _rows(weights["W_E"], kind, task), W_OV, ledger)
            families.append(Family(kind, f"all heads from pos {pos}", read[key], coef))
    for head in range(0 if uniform else n_head):
        rows = slice(head * d_head, (head + 1) * d_head)
        W_OV = iv.einsum("oe,ed->od", Ball.exact(weights["W_O"][:, rows]), Ball.exact(weights["W_V"][rows]), ledger)
        for pos, kind in enumerate(kinds):
            vectors = iv.einsum("td,od->to", _rows(weights["W_E"], kind, task), W_OV, ledger)
            if pattern is None:  # uniform attention
                attention = Ball.exact(torch.tensor(1.0 / task.n_pos))
            else:
                attention = pattern[head][pos]
            families.append(Family(kind, f"head {head} from pos {pos}", vectors, iv.mul(scale, attention, ledger)))
    if uniform:
        families, moved = _merge_constant_coefficients(families, ledger)
    W_gate, W_in, W_U = (Ball.exact(weights[k]) for k in ("W_gate", "W_in", "W_U"))
    for family in families:
        family.gate = iv.einsum("nd,hd->nh", family.vectors, W_gate, ledger)
        family.linear = iv.einsum("nd,hd->nh", family.vectors, W_in, ledger)
        family.direct = iv.einsum("nd,vd->nv", family.vectors, W_U, ledger)
    unembed_out = iv.einsum("vd,dh->vh", W_U, Ball.exact(weights["W_out"]), ledger)
    circuit = Circuit(task, families, unembed_out, uniform)
    if uniform:
        circuit.slack = scale_slack(circuit, weights, moved, ledger)
    return circuit


def scale_slack(
    circuit: Circuit, weights: dict[str, torch.Tensor], moved: torch.Tensor, ledger: Ledger
) -> Float[torch.Tensor, " vocab"]:
    """A bound on |logit_c(x + D) - logit_c(x)| over every input, where the exact residual stream is x + D and
    ||D||_2 <= `moved` (the coefficients' radii times the vectors they scale): with g_n, h_n the rows of W_gate
    and W_in and G_n >= max |g_n . x| read off the family tables,

        |(g.(x+D))(h.(x+D)) - (g.x)(h.x)| <= G_n ||h_n|| m + ||g_n|| m H_n + ||g_n|| ||h_n|| m^2,

    summed against |U'[c, n]|, plus ||W_U[c]|| m. Costs norms and one pass over U', not a pass over the inputs."""

    def row_norms(W: torch.Tensor) -> torch.Tensor:  # the sum of squares rounded up, then a correctly rounded sqrt
        return iv.round_up(W.double().pow(2).sum(1), W.shape[1]).sqrt() * (1 + 2 * iv.U) + iv.TINY

    g_norm, h_norm, u_norm = row_norms(weights["W_gate"]), row_norms(weights["W_in"]), row_norms(weights["W_U"])
    G = functools.reduce(operator.add, [known(f.gate).magnitude().amax(0) for f in circuit.families])
    H = functools.reduce(operator.add, [known(f.linear).magnitude().amax(0) for f in circuit.families])
    per_neuron = iv.round_up(G * h_norm * moved + g_norm * moved * H + g_norm * h_norm * moved * moved, 6)
    slack = iv.round_up(circuit.unembed_out.magnitude() @ per_neuron + u_norm * moved, per_neuron.numel() + 2)
    ledger.add(
        2 * sum(weights[k].numel() for k in ("W_gate", "W_in", "W_U"))
        + 12 * per_neuron.numel()
        + 2 * circuit.unembed_out.mid.numel()
        + 3 * slack.numel()
    )
    return slack


def _merge_constant_coefficients(families: list[Family], ledger: Ledger) -> tuple[list[Family], torch.Tensor]:
    """Families with scalar coefficients merged per kind at the coefficients' midpoints: sum_f coef^_f v_f, with
    coefficient 1; and a bound m on how far the exact residual stream can lie from that, ||D||_2 <=
    sum_f r_coef_f max_i ||v_f[i]||_2 over every input (`scale_slack` turns it into a logit bound)."""
    merged: dict[Kind, Ball] = {}
    moved = torch.zeros((), dtype=torch.float64)
    for family in families:
        scaled = iv.mul(family.vectors, Ball.exact(family.coef.mid), ledger)
        merged[family.kind] = iv.add(merged[family.kind], scaled, ledger) if family.kind in merged else scaled
        if family.coef.rad.any():
            norm = iv.round_up(family.vectors.magnitude().pow(2).sum(-1), family.vectors.shape[-1]).sqrt().amax()
            moved = moved + family.coef.rad.amax() * norm * (1 + 4 * iv.U)
            ledger.add(3 * family.vectors.mid.numel() + 4)
    merged_families = [
        Family(kind, f"all {kind}", vectors, Ball.exact(torch.tensor(1.0))) for kind, vectors in merged.items()
    ]
    return merged_families, iv.round_up(moved, len(families))


def pair_table(f: Family, g: Family, unembed_out: Ball, ledger: Ledger) -> Ball:
    """sum_n U'[c, n] ((W_gate v_f)_n (W_in v_g)_n + (W_gate v_g)_n (W_in v_f)_n) on the (a, b) grid [A, B, vocab]
    (one product when f is g): the quadratic term of the pair, without coefficients."""
    hidden = iv.mul(f.grid(f.gate), g.grid(g.linear), ledger)
    if f is not g:
        hidden = iv.add(hidden, iv.mul(g.grid(g.gate), f.grid(f.linear), ledger), ledger)
    return iv.einsum("abn,cn->abc", hidden, unembed_out, ledger)


def coefficient(*families: Family, ledger: Ledger) -> Ball:
    """The product of the families' coefficients (scalar or [p, p])."""
    result = families[0].coef
    for family in families[1:]:
        result = iv.mul(result, family.coef, ledger)
    return result


def is_interaction(f: Family, g: Family) -> bool:
    """A pair of an a-family and a b-family: a term that depends on a and b jointly."""
    return {f.kind, g.kind} == {"a", "b"}


def pairs(circuit: Circuit) -> list[tuple[Family, Family]]:
    """Unordered pairs (f, g), f before or equal to g."""
    fams = circuit.families
    return [(fams[i], fams[j]) for i in range(len(fams)) for j in range(i, len(fams))]


def exact_logits(circuit: Circuit, ledger: Ledger) -> Float[torch.Tensor, "p p vocab"]:
    """The logits of every input assembled term by term (interaction tensors in full): a ball-arithmetic check of
    the decomposition against the model's forward pass. Returns the midpoints."""
    p = circuit.task.p
    total = Ball.exact(torch.zeros(p, p, circuit.unembed_out.shape[0]))
    for f in circuit.families:
        total = iv.add(total, iv.mul(coef_grid(f.coef), f.grid(f.direct), ledger), ledger)
    for f, g in pairs(circuit):
        term = iv.mul(
            coef_grid(coefficient(f, g, ledger=ledger)), pair_table(f, g, circuit.unembed_out, ledger), ledger
        )
        total = iv.add(total, term, ledger)
    return total.mid


def circuit_logits(circuit: Circuit, a: Int[torch.Tensor, " s"], b: Int[torch.Tensor, " s"], ledger: Ledger) -> Ball:
    """The logits of the inputs (a[s], b[s]) evaluated through the circuit, as [s, vocab] balls:

        x = sum_f coef_f v_f,   logit = U' ((W_gate x) * (W_in x)) + W_U x,

    with every family's projections W_gate v_f, W_in v_f, W_U v_f read from the circuit (no d_model work per input).
    Midpoints are one float64 evaluation; radii are bounded per input with norms (see `_mix`), so the proof costs
    about one float64 evaluation. The uncompressed proof, and the fallback for inputs a compressed bound leaves open.
    """
    gate, gate_rad = _mix(circuit, "gate", a, b, ledger)
    linear, linear_rad = _mix(circuit, "linear", a, b, ledger)
    direct, direct_rad = _mix(circuit, "direct", a, b, ledger)
    hidden = gate * linear
    gate_max, linear_max, hidden_max = (t.abs().amax(1) for t in (gate, linear, hidden))
    hidden_l1 = iv.round_up(hidden.abs().sum(1), hidden.shape[1])
    # |g l - g^ l^| <= |g^| r_l + r_g (|l^| + r_l), plus the product's rounding: for every hidden unit
    hidden_rad = iv.round_up(gate_max * linear_rad + gate_rad * (linear_max + linear_rad) + iv.U * hidden_max, 3)
    U_out = circuit.unembed_out
    U_l1 = iv.round_up(U_out.mid.abs().sum(1), U_out.shape[1])  # [vocab]
    U_rad = U_out.rad.expand_as(U_out.mid).amax(1)  # [vocab]
    mid = hidden @ U_out.mid.T + direct
    # sum_n |U'^ h - U' h| <= r_h |U'^|_1 + r_U' (|h^|_1 + n r_h); the matmul's rounding <= gamma_n |U'^|_1 max|h^|
    rad = (
        (hidden_rad + iv.gamma(hidden.shape[1]) * hidden_max)[:, None] * U_l1
        + U_rad * (hidden_l1 + hidden.shape[1] * hidden_rad)[:, None]
        + direct_rad[:, None]
        + iv.U * mid.abs()
    )
    rad = rad + circuit.slack
    n, h, vocab = len(a), hidden.shape[1], mid.shape[1]
    ledger.add(n * (h + 8 * h + 8 + 2 * h * vocab + 9 * vocab) + 3 * vocab * h)
    return Ball(mid, iv.round_up(rad, 6))


def _mix(
    circuit: Circuit, table: str, a: Int[torch.Tensor, " s"], b: Int[torch.Tensor, " s"], ledger: Ledger
) -> tuple[Float[torch.Tensor, "s k"], Float[torch.Tensor, " s"]]:
    """sum_f coef_f(a, b) T_f[i_f] for a family table T ("gate", "linear" or "direct"): (midpoints [s, k], one
    radius per input covering every entry [s]). Per family the radius is |coef^| r_T + r_coef (|T^| + r_T) with the
    table's row maxima, and the float64 sum of the F terms is off by at most gamma_F sum_f |coef^ T^|."""
    families = circuit.families
    mid = torch.zeros((), dtype=torch.float64)
    rad = torch.zeros(len(a), dtype=torch.float64)
    for family in families:
        T = getattr(family, table)
        rows = {"a": a, "b": b, "1": torch.zeros_like(a)}[family.kind]
        T_rad = T.rad.expand_as(T.mid).amax(1)[rows]
        T_mag = iv.round_up(T.mid.abs() + T.rad, 2).amax(1)[rows]
        coef = family.coef if family.coef.mid.ndim == 0 else family.coef[a, b]
        coef_mag = coef.mid.abs()
        mid = mid + coef.mid[..., None] * T.mid[rows]
        rad = rad + coef_mag * T_rad + coef.rad * T_mag + iv.gamma(len(families)) * coef_mag * T_mag
        ledger.add(3 * T.mid.numel() + len(a) * (2 * T.mid.shape[1] + 8))
    return mid, iv.round_up(rad, 3 * len(families))


def coef_grid(coef: Ball) -> Ball:
    """A scalar or [p, p] coefficient laid against [p, p, vocab] tables: [p, p, 1] (scalars stay scalars)."""
    return coef.map(lambda t: t[..., None] if t.ndim == 2 else t)
