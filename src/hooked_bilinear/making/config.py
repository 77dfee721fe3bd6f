"""`TrainConfig`, the optimisation settings of `train` and `bilinearize`, checked before any work starts.

This module imports no torch: the command line reads its defaults for `--help`."""

from __future__ import annotations

from dataclasses import dataclass

from hooked_bilinear.errors import HookedBilinearError, option, said


@dataclass
class TrainConfig:
    """Optimisation settings. `batch_size` is the GLOBAL batch (split evenly across processes); `micro_batch_size`:
    rows per forward pass on a rank (gradient accumulation; None: the rank's whole share at once); `autocast`: bf16
    autocast (None: on CUDA only). The learning rate rises linearly over `warmup_steps`, then decays (cosine) to
    `min_lr_ratio * lr` at the last step."""

    steps: int = 1000
    batch_size: int = 8
    seq_len: int = 256
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    gradient_checkpointing: bool = False
    autocast: bool | None = None
    micro_batch_size: int | None = None

    def check(self, max_positions: int | None = None) -> None:
        """Refuse settings that would silently train otherwise than asked.

        Args:
            max_positions: the model's `max_position_embeddings`, when known: `seq_len` may not exceed it.

        Raises:
            HookedBilinearError: a non-positive count, a warmup longer than the run (the learning rate would never
                reach `lr`), or sequences longer than the model's positions.
        """
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every"):
            value = getattr(self, name)
            if value < 1:
                raise HookedBilinearError(f"{option(name, value)}: must be a positive number.")
        if self.warmup_steps < 0:
            raise HookedBilinearError(f"{option('warmup_steps', self.warmup_steps)}: must be 0 or more.")
        if self.warmup_steps > self.steps:
            reached = self.steps / self.warmup_steps
            raise HookedBilinearError(
                f"{option('warmup_steps', self.warmup_steps)} is longer than the run ({option('steps', self.steps)}): "
                f"the learning rate would rise for the whole run and stop at {reached:.0%} of lr, never reaching it. "
                f"Pass {_name('warmup_steps')} of at most {self.steps} (e.g. {self.steps // 20})."
            )
        if max_positions is not None and self.seq_len > max_positions:
            raise HookedBilinearError(
                f"{option('seq_len', self.seq_len)} is longer than the model's {max_positions} positions "
                f"(max_position_embeddings): positions past {max_positions} were never trained. Pass "
                f"{_name('seq_len')} of at most {max_positions}."
            )


def _name(field: str) -> str:
    """A setting as the user names it: its flag on the command line, else the keyword."""
    return said(field, "--" + field.replace("_", "-"))
