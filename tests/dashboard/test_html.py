"""Embedding: any text survives the trip into a <script> element and back (no `</script>` can end it early)."""

from __future__ import annotations

import pytest

from hooked_bilinear.dashboard.html import embed_json, read_data, render
from hooked_bilinear.errors import DashboardError


def test_data_round_trips_through_the_page() -> None:
    data = {"kind": "lm", "vocab": {"0": "</script><script>alert(1)</script>", "1": "\u2028<!--", "2": "é ✓"}}
    page = render(data, "a <b> title", "meta & more")
    assert "</script><script>alert" not in page and "<b>" not in page
    assert read_data(page) == data
    assert "<" not in embed_json(data)


def test_a_page_without_data_is_refused() -> None:
    with pytest.raises(DashboardError, match="no dashboard data"):
        read_data("<html></html>")
