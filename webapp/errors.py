"""Error pages: JSON under /api/, HTML elsewhere. The 500 handler rolls the session back."""

from __future__ import annotations

from flask import Flask, current_app, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .extensions import db
from .jobs import TooManyJobs


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _render(status: int, title: str, message: str):
    if _wants_json():
        return jsonify({"error": title, "message": message, "status": status}), status
    return render_template("errors.html", status=status, title=title, message=message), status


def init_app(app: Flask) -> None:
    """Install the handlers on ``app``."""

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return _render(400, "CSRF token missing or invalid", error.description)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge):
        return _render(413, "Upload too large", too_large_message(error))

    @app.errorhandler(TooManyJobs)
    def too_many_jobs(error: TooManyJobs):
        return _render(429, "Too Many Requests", str(error))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        response = make_response(_render(error.code or 500, error.name, error.description or ""))
        for name, value in error.get_headers():  # Allow on a 405, WWW-Authenticate, ...
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(500)
    def server_error(error):
        db.session.rollback()
        return _render(500, "Internal Server Error", "Something went wrong; it has been logged.")


def too_large_message(error: RequestEntityTooLarge) -> str:
    """Say which limit the request broke and how to raise it: the body size, or the form's
    part count or in-memory field size (werkzeug's other 413s)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    sent = request.content_length
    if limit is not None and (sent is None or sent > limit):
        size = f" of {_megabytes(sent)}" if sent is not None else ""
        return (
            f"The upload{size} is over the limit of {_megabytes(limit)} "
            f"(REALFAKE_MAX_UPLOAD_BYTES={limit}). Nothing was saved; split it into smaller "
            "archives or ask an admin to raise the limit."
        )
    return f"{error.description} Nothing was saved."


def _megabytes(size: int) -> str:
    """A size as people read it: MB, or kB below one megabyte."""
    if size < 1024**2:
        return f"{size / 1024:,.0f} kB"
    return f"{size / 1024**2:,.1f} MB"
