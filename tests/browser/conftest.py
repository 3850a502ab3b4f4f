"""Browser tests: the real app served on 127.0.0.1 in a thread, driven by Playwright in Debian's
Chromium (``/usr/bin/chromium``, installed by ``scripts/setup_browser.sh``; never downloaded).

Skipped cleanly when Chromium is absent.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.factories import make_scored_image, make_version

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(autouse=True)
def _push_request_context():
    """No pytest-flask request context: the server threads serve several users at once."""
    yield


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/setup_browser.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


def closing_bodies(app):
    """``app`` whose every response body is closed, even when the server never calls ``close``.

    werkzeug's development server closes a body only after draining the socket; when the browser
    resets the connection mid-response (a page closed while its favicon is still being sent), the
    drain raises and ``close`` is skipped, so a file response is left for the garbage collector and
    its ResourceWarning fails whichever test is running. Here the body is read through a generator
    whose ``finally`` closes it: at the end of the response, or when the abandoned generator is
    collected. gunicorn, which serves the product, always closes bodies.
    """

    def wrapped(environ, start_response):
        body = app(environ, start_response)
        try:
            yield from body
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return wrapped


@pytest.fixture
def server(app):
    """The app on a free loopback port, served by werkzeug in a thread; yields its base URL."""
    http = make_server("127.0.0.1", 0, closing_bodies(app), threaded=True)
    thread = threading.Thread(target=http.serve_forever, name="test-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    http.server_close()
    thread.join(timeout=10)


@pytest.fixture
def new_page(browser):
    """Pages in fresh browser contexts (separate cookies: separate users); closed afterwards."""
    contexts = []

    def make():
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def queue_of(app):
    """An active version and ``n`` uncertain unlabelled images, in a known queue order."""

    def make(n: int) -> list[int]:
        with app.app_context():
            version = make_version("v1")
            images = [
                make_scored_image(version, 0.5 + 0.01 * index, label="unknown")
                for index in range(n)
            ]
            return [image.id for image in images]

    return make
