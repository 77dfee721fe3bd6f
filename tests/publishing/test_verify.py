"""`publishing.verify`: logits read in eval mode, the caller's mode handed back, the tolerance rule."""

from __future__ import annotations

import pytest
import torch

from hooked_bilinear.errors import ConversionError
from hooked_bilinear.publishing.verify import check_equal_logits, logits_of, probe_tokens


class _DropoutLM(torch.nn.Module):
    """Tokens -> logits through a dropout: different outputs in training mode, the plain product in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 6)
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.embed(tokens)) @ self.embed.weight.T


class _Broken(_DropoutLM):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("forward failed")


def test_logits_of_runs_a_module_in_eval_mode_and_hands_it_back_in_its_mode() -> None:
    torch.manual_seed(0)
    model = _DropoutLM().train()
    tokens = probe_tokens(10, 8)
    expected = (model.embed(tokens) @ model.embed.weight.T).double()
    for _ in range(3):  # in training mode, dropout would change every call
        torch.testing.assert_close(logits_of(model, tokens), expected, atol=0, rtol=0)
    assert model.training and model.dropout.training
    model.eval()
    torch.testing.assert_close(logits_of(model, tokens), expected, atol=0, rtol=0)
    assert not model.training and not model.dropout.training


def test_logits_of_hands_the_mode_back_when_the_forward_fails() -> None:
    model = _Broken().train()
    with pytest.raises(RuntimeError, match="forward failed"):
        logits_of(model, probe_tokens(10, 8))
    assert model.training and model.dropout.training


def test_logits_of_a_callable_and_of_an_output_with_logits() -> None:
    tokens = probe_tokens(10, 8)
    out = logits_of(lambda t: t.float()[..., None] * torch.ones(3), tokens)
    assert out.dtype == torch.float64 and out.shape == (2, 8, 3)
    torch.testing.assert_close(out[..., 1], tokens.double(), atol=0, rtol=0)


def test_check_equal_logits_allows_tolerance_times_the_logit_scale() -> None:
    tokens = probe_tokens(10, 8)
    base = torch.full((2, 8, 3), 4.0)
    assert check_equal_logits(lambda t: base, lambda t: base + 0.04, tokens, 0.01, "x") == pytest.approx(0.04)
    with pytest.raises(
        ConversionError, match=r"^probe: the converted model's logits differ from the source's by 0\.05"
    ):
        check_equal_logits(lambda t: base, lambda t: base + 0.05, tokens, 0.01, "probe")
