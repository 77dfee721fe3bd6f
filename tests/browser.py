"""Headless Chromium for page tests, offline: Debian's `chromium` driven by Playwright, every request that would leave
the machine refused and recorded, every console error and page error recorded.

    with offline_page() as (page, log):
        page.goto(path.as_uri())
        ...
    assert log.clean(), log.problems()
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlparse

import pytest

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def chromium_path() -> str:
    """Debian's Chromium; scripts/setup.sh installs it (`apt-get install -y chromium`)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: run `apt-get install -y chromium` (scripts/setup.sh does it as root)")
    return path


def is_local(url: str) -> bool:
    """True for file:, data:, blob: and about: addresses and for loopback hosts."""
    parsed = urlparse(url)
    if parsed.scheme in {"file", "data", "blob", "about"}:
        return True
    return parsed.hostname in LOCAL_HOSTS


@dataclass
class PageLog:
    """What a page did that a test must see: remote requests (refused), console errors, uncaught exceptions."""

    remote_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def problems(self) -> str:
        return f"remote requests {self.remote_requests}, console errors {self.console_errors}, page errors {self.page_errors}"

    def clean(self) -> bool:
        return not (self.remote_requests or self.console_errors or self.page_errors)


@contextmanager
def offline_page(width: int = 1280, height: int = 900) -> Iterator[tuple[object, PageLog]]:
    """A fresh Chromium page with the network cut off: any request that is not local is aborted and logged."""
    from playwright.sync_api import sync_playwright

    log = PageLog()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})

            def route(route_, request) -> None:
                if is_local(request.url):
                    route_.continue_()
                else:
                    log.remote_requests.append(request.url)
                    route_.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda message: message.type == "error" and log.console_errors.append(message.text))
            page.on("pageerror", lambda error: log.page_errors.append(str(error)))
            yield page, log
        finally:
            browser.close()
