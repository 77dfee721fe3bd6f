"""The task (a + b) mod p: its token sequences, labels, train/test split, and the record config.json keeps of it.

Tokens are the residues 0..p-1 and, for the input format "a b =", an `=` token with id p. The answer is read from
the logits at the last position. Two standard set-ups:

- Nanda et al. ("Progress measures for grokking"): p=113, "a b =", 30% of the pairs for training.
- Zhong et al. ("The Clock and the Pizza"): p=59, "a b", uniform attention, 80% for training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from jaxtyping import Int

from hooked_bilinear.errors import CheckpointFormatError

CONFIG_KEY = "modular_addition"
InputFormat = Literal["a b =", "a b"]


@dataclass(frozen=True)
class ModAddTask:
    """(a + b) mod p on the input format `input_format`; `uniform_attention`: query and key weights fixed at zero.

    `train_fraction` of the p^2 pairs, drawn with `seed`, are the training set; the rest the test set.
    """

    p: int = 113
    input_format: InputFormat = "a b ="
    train_fraction: float = 0.3
    uniform_attention: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.p < 3:
            raise ValueError(f"p={self.p}: modular addition needs a modulus of at least 3.")
        if self.input_format not in ("a b =", "a b"):
            raise ValueError(f"input_format={self.input_format!r} is not 'a b =' or 'a b'.")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction={self.train_fraction} must lie strictly between 0 and 1.")

    @property
    def has_equals(self) -> bool:
        return self.input_format == "a b ="

    @property
    def vocab_size(self) -> int:
        return self.p + 1 if self.has_equals else self.p

    @property
    def n_pos(self) -> int:
        return 3 if self.has_equals else 2

    def tokens(self) -> Int[torch.Tensor, "p_squared pos"]:
        """Every input, row a * p + b: `[a, b, =]` or `[a, b]`."""
        a, b = self.operands()
        columns = [a, b] + ([torch.full_like(a, self.p)] if self.has_equals else [])
        return torch.stack(columns, dim=1)

    def operands(self) -> tuple[Int[torch.Tensor, " p_squared"], Int[torch.Tensor, " p_squared"]]:
        """(a, b) of every input, row a * p + b."""
        grid = torch.arange(self.p)
        return grid.repeat_interleave(self.p), grid.repeat(self.p)

    def labels(self) -> Int[torch.Tensor, " p_squared"]:
        """(a + b) mod p of every input."""
        a, b = self.operands()
        return (a + b) % self.p

    def split(self) -> tuple[Int[torch.Tensor, " n_train"], Int[torch.Tensor, " n_test"]]:
        """Row indices of the training and test pairs, a seeded random split."""
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(self.p * self.p, generator=generator)
        n_train = round(self.train_fraction * self.p * self.p)
        return order[:n_train].sort().values, order[n_train:].sort().values

    def to_config(self) -> dict[str, Any]:
        """The record kept under config.json's `modular_addition` key."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: Any) -> ModAddTask:
        """The task a model's config records (a BilinearConfig, a config dict, or the record itself)."""
        record = (
            config
            if isinstance(config, Mapping) and "p" in config
            else (config.get(CONFIG_KEY) if isinstance(config, Mapping) else getattr(config, CONFIG_KEY, None))
        )
        if not isinstance(record, Mapping):
            raise CheckpointFormatError(
                f"this model's config has no `{CONFIG_KEY}` record, so it is not a modular-addition model. Load "
                f"the shipped 'modadd-p113' or 'modadd-p59', or train one with `hooked-bilinear modadd train`."
            )
        return cls(**record)


NANDA = ModAddTask(p=113, input_format="a b =", train_fraction=0.3, uniform_attention=False)
"""Nanda et al.'s set-up: p = 113, inputs "a b =", trained attention, 30% of the pairs in training (modadd-p113)."""
PIZZA = ModAddTask(p=59, input_format="a b", train_fraction=0.8, uniform_attention=True)
"""The pizza set-up: p = 59, inputs "a b", uniform attention, 80% of the pairs in training (modadd-p59)."""
