"""Error pages: JSON under /api/, HTML elsewhere. The 500 handler rolls the session back.

Every JSON error, here or in a view, is built by :func:`json_error`, so the API answers
``{"error", "message", "status"}`` the same way whoever refuses the request.
"""

from __future__ import annotations

from flask import (
    Flask,
    Response,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
)
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .extensions import db
from .jobs import TooManyJobs

# The titles of the statuses views refuse with (werkzeug's own names for the rest).
STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def json_error(status: int, message: str, title: str | None = None) -> Response:
    """The JSON error answer: ``{"error": title, "message": message, "status": status}``, the
    title defaulting to the status's usual name."""
    body = {"error": title or STATUS_TITLES.get(status, "Error"), "message": message}
    response = jsonify(body | {"status": status})
    response.status_code = status
    return response


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _render(status: int, title: str, message: str):
    if _wants_json():
        return json_error(status, message, title)
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
