"""Error pages: JSON under /api/, HTML elsewhere. The 500 handler rolls the session back."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .extensions import db


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

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return _render(error.code or 500, error.name, error.description or "")

    @app.errorhandler(500)
    def server_error(error):
        db.session.rollback()
        return _render(500, "Internal Server Error", "Something went wrong; it has been logged.")
