"""One self-contained HTML file: the template, its style and script (package data) and the data, all inlined.

Nothing is fetched when the page opens: no CDN, no font, no image outside the file, and a Content-Security-Policy
that forbids any, so a page opened from file:// on a machine without network shows everything.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
from importlib import metadata, resources
from pathlib import Path

from beartype import beartype

from hooked_bilinear.errors import DashboardError

DATA_ELEMENT = re.compile(r'<script id="data" type="application/json">(.*?)</script>', re.DOTALL)


def _asset(name: str) -> str:
    return resources.files("hooked_bilinear.dashboard").joinpath(name).read_text(encoding="utf-8")


def embed_json(data: dict) -> str:
    """JSON safe inside a <script> element: no `<` (so no `</script>`), no NaN."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: dict, title: str, meta: str) -> str:
    """The page: template.html with dashboard.css, dashboard.js and `data` (read back by `read_data`) inlined."""
    try:
        version = metadata.version("hooked-bilinear")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "source"
    page = _asset("template.html")
    for key, value in (
        ("__VERSION__", html.escape(version)),
        ("__TITLE__", html.escape(title)),
        ("__META__", html.escape(meta)),
        ("/*STYLE*/", _asset("dashboard.css")),
        ("/*SCRIPT*/", _asset("dashboard.js")),
    ):
        page = page.replace(key, value)
    return page.replace("__DATA__", embed_json(data), 1)


@beartype
def read_data(page: str) -> dict:
    """The data embedded in a dashboard page (the inverse of `render`'s embedding).

    Args:
        page: the HTML text of a page written by `write_dashboard` or `write_classifier_dashboard`.

    Returns:
        The embedded data: per-token rows are base64 float32 (`hooked_bilinear.dashboard.data.unpack` reads them).

    Raises:
        DashboardError: the HTML holds no dashboard data.
    """
    found = DATA_ELEMENT.search(page)
    if found is None:
        raise DashboardError('this HTML holds no dashboard data (<script id="data">): not a dashboard page.')
    return json.loads(found.group(1))


def check_output(path: str | os.PathLike) -> Path:
    """The output file's path, checked before any work: its folder exists and it is not a folder itself."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise DashboardError(f"output path {target} is a folder: give a file name, e.g. {target / 'dashboard.html'}.")
    if not target.parent.is_dir():
        raise DashboardError(
            f"output folder {target.parent} does not exist: create it first (mkdir -p {target.parent}) or choose "
            "another path."
        )
    return target


def write_page(page: str, path: Path) -> int:
    """Write the page atomically (a temporary file in the same folder, then renamed): a failure leaves nothing
    half-written. Returns the size in bytes."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(page)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path.stat().st_size
