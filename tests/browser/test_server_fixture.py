"""The browser tests' server closes the response bodies werkzeug leaves open (no browser)."""

from __future__ import annotations

import gc

from tests.browser.conftest import closing_bodies


class Body:
    """A response body that records whether it was closed."""

    def __init__(self):
        self.closed = False

    def __iter__(self):
        yield b"first"
        yield b"second"

    def close(self):
        self.closed = True


def _app_returning(body):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    return app


def test_a_body_read_to_the_end_is_closed():
    body = Body()
    chunks = closing_bodies(_app_returning(body))({}, lambda status, headers: None)
    assert list(chunks) == [b"first", b"second"]
    assert body.closed


def test_a_body_abandoned_mid_response_is_closed_when_dropped():
    # What werkzeug does when the client resets the connection: stop iterating, never call close.
    body = Body()
    chunks = closing_bodies(_app_returning(body))({}, lambda status, headers: None)
    assert next(iter(chunks)) == b"first"
    assert not body.closed
    del chunks
    gc.collect()
    assert body.closed
