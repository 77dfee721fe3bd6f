"""The page in a real browser (Debian's Chromium, driven by Playwright, network cut off): what it draws is the
embedded data, searching and sorting work, and nothing is fetched and nothing errs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hooked_bilinear.dashboard.data import unpack
from tests.browser import offline_page
from tests.dashboard.conftest import Built

pytest.importorskip("playwright")


def expected_colour(value: float, scale: float) -> tuple[int, int, int, float]:
    """dashboard.js's `colour`: orange for positive, blue for negative, alpha 0.85 |value| / scale at most."""
    alpha = round(min(1.0, abs(value) / scale) * 0.85, 3) if scale > 0 else 0.0
    return (234, 88, 12, alpha) if value >= 0 else (37, 99, 235, alpha)


def parse_colour(text: str) -> tuple[int, int, int, float]:
    numbers = [float(n) for n in re.findall(r"[\d.]+", text)]
    if len(numbers) == 3:
        numbers.append(1.0)
    return int(numbers[0]), int(numbers[1]), int(numbers[2]), numbers[3]


def token_text(name: str) -> str:
    return name[2:] if name.startswith("##") else name


def labels_of(data: dict) -> set[str]:
    return {d["label"].lower() for d in data["directions"]}


def keywords(direction: dict, vocab: dict) -> set[str]:
    """What the search matches besides the label: read-out tokens and the tokens the eigenvectors' contexts are about."""
    words = set()
    for eigen in direction["eigen"]:
        for table in eigen["readout"].values():
            words.update(t.lower() for t, _ in table["top"] + table["bottom"])
        for context in eigen["top"] + eigen["bottom"]:
            words.add(vocab[str(context["ids"][context["pos"] - context["start"]])].lower())
    return words


def test_direction_page_draws_the_embedded_data(built: Built) -> None:
    data = built.data
    with offline_page() as (page, log):
        page.goto(built.path.as_uri())
        rows = page.locator("#overview tbody tr")
        assert rows.count() == len(data["directions"])
        cells = rows.nth(0).locator("td").all_inner_texts()
        first = data["directions"][0]
        assert cells[1:3] == [first["kind"], first["label"]]
        assert abs(float(cells[6]) - first["stats"]["effective_rank"]) <= 1e-3 * first["stats"]["effective_rank"]

        # sort by effective rank (descending on first click)
        page.locator("#overview th", has_text="eff. rank").click()
        shown = [float(t) for t in page.locator("#overview tbody tr td:nth-child(7)").all_inner_texts()]
        assert shown == sorted(shown, reverse=True) and len(shown) == len(data["directions"])

        # search: a direction's label, then a token that only its contexts and read-outs hold
        page.fill("#search", "feature")
        assert page.locator("#overview tbody tr").count() == 2
        word = next(
            w for d in data["directions"] for w in sorted(keywords(d, data["vocab"])) if w not in labels_of(data)
        )
        page.fill("#search", word)
        found = page.locator("#overview tbody tr").evaluate_all("els => els.map(e => +e.dataset.index)")
        expected = [
            i
            for i, d in enumerate(data["directions"])
            if word in d["label"].lower() or word in keywords(d, data["vocab"])
        ]
        assert sorted(found) == expected and 0 < len(expected)
        reason = page.locator("#overview tbody tr td:nth-child(3) .matched").first.inner_text()
        assert re.search(r"(context|read-out) e\d", reason)
        page.fill("#search", "no-such-token-anywhere")
        assert page.locator("#overview tbody tr").count() == 0
        page.fill("#search", "")

        # select a direction: its eigenvectors, contexts, values and highlight colours
        index = 1
        page.locator(f'#overview tbody tr[data-index="{index}"]').click()
        direction = data["directions"][index]
        assert page.locator("#direction-title .label").inner_text() == direction["label"]
        cards = page.locator(".card.eigen")
        assert cards.count() == len(direction["eigen"])
        columns = len(direction["eigen"]) + 2
        for slot in (0, len(direction["eigen"]) - 1):
            eigen = direction["eigen"][slot]
            card = cards.nth(slot)
            assert f"{eigen['lambda']:+.5g}".lstrip("+") in card.locator(".head .title").inner_text().replace("+", "")
            contexts = eigen["top"] + eigen["bottom"]
            scale = max(abs(row[slot]) for c in contexts for row in unpack(c["c"], columns).tolist())
            lines = card.locator(".ctx")
            assert lines.count() == len(contexts)
            for n, context in enumerate(contexts):
                rows_ = unpack(context["c"], columns).tolist()
                spans = lines.nth(n).locator(".tok")
                values = spans.evaluate_all(
                    "els => els.map(e => [e.dataset.v, getComputedStyle(e).backgroundColor, e.textContent, e.classList.contains('center')])"
                )
                assert len(values) == len(context["ids"])
                for i, (value, colour, text, center) in enumerate(values):
                    assert float(value) == rows_[i][slot]
                    got, want = parse_colour(colour), expected_colour(rows_[i][slot], scale)
                    assert got[:3] == want[:3] and abs(got[3] - want[3]) <= 0.01, (colour, want)
                    assert text == token_text(data["vocab"][str(context["ids"][i])])
                    assert center == (context["start"] + i == context["pos"])

        # hovering a token shows its value and its split over every eigencomponent
        card = cards.nth(0)
        target = card.locator(".tok.center").first
        target.hover()
        tip = page.locator("#tip").inner_text()
        context = direction["eigen"][0]["top"][0]
        row = unpack(context["c"], columns)[context["pos"] - context["start"]].tolist()
        assert tip.count("\n") == columns
        for value in row:
            assert f"{value:+.5g}".replace("e+", "e") in tip.replace("e+", "e") or f"{value:.4e}" in tip

        # a feature's interactions: heat-map cells and pairs
        page.goto(built.path.as_uri() + f"#d={len(data['directions']) - 1}")
        inter = data["directions"][-1]["interactions"]
        assert page.locator("#interactions .heatmap rect").count() == len(inter["features"]) ** 2
        assert page.locator("#interactions .pair").count() == len(inter["pairs"])
    assert log.clean(), log.problems()


def test_classifier_page(digits_page: tuple) -> None:
    _, path, data = digits_page
    with offline_page() as (page, log):
        page.goto(path.as_uri())
        assert page.locator("#overview tbody tr").count() == 10
        page.locator('#overview tbody tr[data-index="7"]').click()
        cells = page.locator("#eigen-images > .imgcell.eigen")
        eigen = data["classes"][7]["eigen"]
        assert cells.count() == len(eigen)
        for slot, component in enumerate(eigen):
            assert f"{abs(component['lambda']):.4g}" in cells.nth(slot).inner_text()
        # the eigen-image is drawn from the data: its strongest pixel has the strongest colour
        strongest = max(range(len(eigen[0]["image"])), key=lambda i: abs(eigen[0]["image"][i]))
        width = data["image_shape"][1]
        pixel = (
            cells.nth(0)
            .locator("canvas")
            .first.evaluate(
                f"c => Array.from(c.getContext('2d').getImageData({strongest % width}, {strongest // width}, 1, 1).data)"
            )
        )
        assert pixel in ([255, 88, 12, 255], [37, 99, 235, 255])
        assert page.locator("#masks canvas").count() == 2
    assert log.clean(), log.problems()


def test_a_remote_request_or_console_error_is_caught(built: Built, tmp_path: Path) -> None:
    """The checks above can fail: a page that loads a script from a CDN, or throws, is caught."""
    page_text = built.path.read_text(encoding="utf-8")
    broken = tmp_path / "remote.html"
    broken.write_text(page_text.replace("</head>", '<script src="https://cdn.example.com/lib.js"></script></head>'))
    thrown = tmp_path / "throws.html"
    thrown.write_text(page_text.replace('"use strict";', '"use strict"; null.boom;', 1))
    with offline_page() as (page, log):
        page.goto(broken.as_uri())
        assert log.remote_requests == ["https://cdn.example.com/lib.js"] or log.console_errors
        log.remote_requests.clear()
        log.console_errors.clear()
        page.goto(thrown.as_uri())
        page.wait_for_timeout(100)
        assert log.page_errors
