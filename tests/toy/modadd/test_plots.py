"""The cost-scaling picture is written as a PNG with one line per cost that has points."""

from __future__ import annotations

from hooked_bilinear.toy.modadd.plots import plot_cost_scaling


def test_cost_scaling_plot_is_written(tmp_path):
    rows = [
        {"p": 31, "brute": 5.8e8, "compressed": 7.5e7, "exact": 6.8e7, "fallback": 8e7, "params": 2.7e5, "seed": 0},
        {"p": 59, "brute": 2.1e9, "compressed": 1.9e8, "params": 2.8e5},
    ]
    path = plot_cost_scaling(rows, tmp_path / "scaling.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
