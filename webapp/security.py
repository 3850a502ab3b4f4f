"""Security headers on every response.

The desk's pages load their scripts, styles and images from this origin only: the CSP allows
``'self'`` and nothing else for scripts (no inline script, no ``eval``), inline styles (the
server-drawn SVG plots carry ``<style>`` and ``style=`` attributes), and ``data:`` / ``blob:``
images (heatmaps are shown from object URLs). No page may be framed (clickjacking), the browser
must not sniff a type other than the one sent (an uploaded file is never run as a script), and a
link to another site does not leak the page's address, which can carry filters and image ids.
A page or API answer for a logged-in user is never stored by the browser or a proxy
(``Cache-Control: no-store``: another person at the same computer cannot page back to it) unless
the view chose its own caching (images, whose id always names the same content).
With ``REALFAKE_SECURE_COOKIES=1`` the desk is served over HTTPS only, so browsers are told to
stay on HTTPS too (HSTS).
"""

from __future__ import annotations

from flask import Flask, Response
from flask_login import current_user

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=31536000"


def init_app(app: Flask) -> None:
    """Add the headers to every response of ``app`` (a view may set its own first)."""

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if app.config.get("SESSION_COOKIE_SECURE"):
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        if "Cache-Control" not in response.headers and current_user.is_authenticated:
            response.headers["Cache-Control"] = "no-store"
        return response
