"""The cost-scaling picture is written as a PNG with one line per cost that has points, drawn from those points."""

from __future__ import annotations

from typing import Any

import pytest

from hooked_bilinear.toy.modadd import plots
from hooked_bilinear.toy.modadd.plots import plot_cost_scaling


def test_cost_scaling_plot_is_written_with_each_cost_drawn_from_its_rows(tmp_path, monkeypatch: pytest.MonkeyPatch):
    rows = [
        {"p": 31, "brute": 5.8e8, "compressed": 7.5e7, "exact": 6.8e7, "fallback": 8e7, "params": 2.7e5, "seed": 0},
        {"p": 59, "brute": 2.1e9, "compressed": 1.9e8, "params": 2.8e5},
    ]
    drawn: list[Any] = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: (drawn.append(fig), save(fig, path))[1])
    path = plot_cost_scaling(rows, tmp_path / "scaling.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    lines = {line.get_label(): line for line in drawn[0].axes[0].get_lines() if not line.get_label().startswith("_")}
    expected = {
        "brute force": ([31, 59], [5.8e8, 2.1e9]),
        "exact circuit": ([31], [6.8e7]),  # a cost missing at some p is left out there, not drawn as 0
        "compressed proof alone": ([31, 59], [7.5e7, 1.9e8]),
        "compressed proof + exact fallback": ([31], [8e7]),
        "model parameters": ([31, 59], [2.7e5, 2.8e5]),
    }
    assert len(lines) == len(expected)
    for start, (x, y) in expected.items():
        (line,) = [line for label, line in lines.items() if label.startswith(start)]
        assert list(line.get_xdata()) == x and list(line.get_ydata()) == y


def test_quadrature_points_plot_draws_each_frequencys_units(tmp_path, monkeypatch: pytest.MonkeyPatch):
    from hooked_bilinear.loading.pretrained import load_model
    from hooked_bilinear.toy.modadd import PIZZA
    from hooked_bilinear.toy.modadd.interval import Ledger
    from hooked_bilinear.toy.modadd.quadrature import read_tables, read_units

    reading = read_units(read_tables(load_model("modadd-relu-p59"), PIZZA, Ledger()), PIZZA.p, None, Ledger())
    drawn: list[Any] = []
    original = plots.save_figure

    def keep(fig, path):
        drawn.append(fig)
        return original(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    path = plots.plot_quadrature_points(reading, tmp_path / "q.png", "units")
    assert path.exists() and path.stat().st_size > 0
    axes = drawn[0].axes
    assert len(axes) == 2 * len(reading.frequencies)
    for column, k in enumerate(reading.frequencies):
        n_units = int((reading.frequency == k).sum())
        assert axes[column].get_title().startswith(f"k = {k}: {n_units} units")
        assert len(axes[len(reading.frequencies) + column].collections[0].get_offsets()) == n_units
