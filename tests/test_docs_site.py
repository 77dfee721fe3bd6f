"""The docs site (mkdocs.yml) in a real browser, offline: headless Chromium opens the home page, an API page and a
tutorial page from a loopback server; navigation, a rendered figure and search work, and no page asks for anything
beyond the machine. Also: every public name is in the API reference, and no built page references a remote script,
stylesheet, font or image.

CI (.ci/run) builds the site with every tutorial executed and points HOOKED_BILINEAR_SITE at it; without that
variable the test builds its own copy without executing the tutorials (half a minute), so the tutorial page is
checked for its cells but not for their outputs.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import importlib
import os
import re
import shutil
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import hooked_bilinear.cli
from tests.browser import is_local, offline_page
from tests.test_docstrings import PUBLIC_PACKAGES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# what a browser fetches by itself: scripts, stylesheets, images, media, frames, CSS imports and url()s
FETCHED = re.compile(
    r"""<(?:script|img|iframe|source|audio|video|embed)\b[^>]*?\bsrc=["']([^"']+)"""
    r"""|<link\b[^>]*?\bhref=["']([^"']+)"""
    r"""|@import\s+(?:url\()?["']?([^"')\s;]+)"""
    r"""|url\(\s*["']?([^"')\s]+)"""
    r"""|import\(\s*["']([^"']+)""",
    re.IGNORECASE,
)
REMOTE_FONT = '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'


@dataclass
class Site:
    folder: Path
    executed: bool  # the tutorials were executed (their outputs and figures are on the pages)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    given = os.environ.get("HOOKED_BILINEAR_SITE")
    if given:
        return Site(Path(given), executed=True)
    folder = tmp_path_factory.mktemp("site")
    env = {**os.environ, "HOOKED_BILINEAR_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return Site(folder, executed=False)


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[str]:
    """The site on 127.0.0.1 (mkdocs-material's search needs http, not file:)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site.folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def public_names() -> dict[str, set[str]]:
    """Every name in the `__all__` of the package and its public subpackages -> the API anchors that document it: its
    name in the package, or where it is defined (a function named like its module, `analysis.hosvd`, is documented
    from its module)."""
    anchors = {}
    for package in PUBLIC_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, types.ModuleType):
                anchors[f"{package}.{name}"] = {value.__name__}
            else:
                defined = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
                anchors[f"{package}.{name}"] = {f"{package}.{name}", defined}
    return anchors


def remote_references(html: str) -> list[str]:
    found = [next(group for group in match.groups() if group) for match in FETCHED.finditer(html)]
    return [url for url in found if re.match(r"(?i)(https?:)?//", url) and not is_local(url)]


def test_api_reference_lists_every_public_name(site: Site) -> None:
    anchors = set()
    for page in (site.folder / "api").glob("*.html"):
        anchors.update(re.findall(r'id="(hooked_bilinear[\w.]*)"', page.read_text()))
    names = public_names()
    assert len(names) > 100
    missing = sorted(name for name, documented in names.items() if not documented & anchors)
    assert not missing, f"public names missing from the API reference: {missing}"


def test_no_page_references_a_remote_resource(site: Site) -> None:
    pages = list(site.folder.rglob("*.html"))
    assert len(pages) > 20
    offenders = {str(page.relative_to(site.folder)): remote_references(page.read_text()) for page in pages}
    assert not {page: urls for page, urls in offenders.items() if urls}
    # the check sees a remote font (it can fail)
    assert remote_references(REMOTE_FONT) == ["https://fonts.googleapis.com/css?family=Roboto"]


def commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from commands(child)


def test_generated_pages(site: Site) -> None:
    """The command-line page has every command and every flag of the parsers; the home page is the README."""
    cli = (site.folder / "cli.html").read_text()
    every = list(commands(hooked_bilinear.cli.parser()))
    assert len(every) >= 9
    for command in every:
        assert f"<code>{command.prog}</code>" in cli, command.prog
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"<code>{flag}</code>" in cli, f"{command.prog} {flag}"
    home = (site.folder / "index.html").read_text()
    assert "Eigendecompose an output direction" in home and 'href="tutorials/quickstart.html"' in home


def figure_widths(page: Any) -> list[int]:
    return page.eval_on_selector_all("article img", "images => images.map(image => image.naturalWidth)")


def test_pages_in_the_browser_offline(site: Site, server: str, tmp_path: Path) -> None:
    shots = Path(os.environ.get("HOOKED_BILINEAR_SCREENSHOTS", tmp_path))
    with offline_page() as (opened, log):
        page: Any = opened
        page.goto(f"{server}/index.html")
        page.screenshot(path=str(shots / "home.png"), full_page=False)
        # navigation: the sidebar leads to the API page
        page.click("nav.md-nav--primary >> text=hooked_bilinear.analysis")
        page.wait_for_url("**/api/analysis.html")
        assert page.locator('[id="hooked_bilinear.analysis.eigendecompose"]').count() == 1
        signature = page.locator('[id="hooked_bilinear.analysis.interaction_matrix"] ~ div').first.inner_text()
        assert 'Float[Tensor, "*n d_out"]' in signature  # jaxtyping shapes in the signature
        page.screenshot(path=str(shots / "api.png"))
        # a page with a figure: it loaded
        page.goto(f"{server}/analysis.html")
        assert figure_widths(page) and min(figure_widths(page)) > 0
        # a tutorial: its cells, and with executed outputs its figures
        page.goto(f"{server}/tutorials/weight_analysis.html")
        assert "contrast_directions" in page.inner_text("article")
        if site.executed:
            assert "max relative error of u.mlp(x) = x^T Q_u x" in page.inner_text("article")
            assert len(figure_widths(page)) >= 3 and min(figure_widths(page)) > 0
        page.screenshot(path=str(shots / "tutorial.png"))
        # search, built locally
        page.click("label.md-search__icon, .md-search__input")
        # the index builds in a worker; a query typed before it is ready is never run
        page.wait_for_function(
            "() => !document.querySelector('.md-search-result__meta').textContent.includes('Initializing')",
            timeout=60000,
        )
        page.locator(".md-search__input").press_sequentially("eigendecompose")  # typed, as a reader does
        page.wait_for_selector(".md-search-result__item", timeout=30000)
        assert page.locator(".md-search-result__item").count() > 0
        page.screenshot(path=str(shots / "search.png"))
    assert log.clean(), log.problems()


def test_a_remote_font_is_caught(site: Site, server: str, tmp_path: Path) -> None:
    """The offline guard works on this site: the home page with a remote font added asks for it, and is refused."""
    copy = tmp_path / "site"
    shutil.copytree(site.folder, copy)
    home = copy / "index.html"
    home.write_text(home.read_text().replace("</head>", REMOTE_FONT + "</head>", 1))
    with offline_page() as (opened, log):
        page: Any = opened
        page.goto(home.as_uri())
    assert log.remote_requests == ["https://fonts.googleapis.com/css?family=Roboto"]
