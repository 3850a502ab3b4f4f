"""Log in and out."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from ..extensions import db
from ..services.people import accounts, login_throttle

bp = Blueprint("auth", __name__, url_prefix="/auth")


def _safe_next(target: str | None) -> str:
    """Only same-site relative redirects after login.

    Browsers read ``//host`` and ``/\\host`` as another site, and drop tabs and newlines
    inside a URL, so any of those (and any control character) sends the user home instead.
    """
    unsafe = (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(character) < 32 for character in target)
        or urlsplit(target).netloc
    )
    return url_for("main.index") if unsafe else target


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; on POST check the password (throttled, see ``login_throttle``) and
    start a session."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    if request.method == "GET":
        return render_template("auth/login.html", username="")
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    address = request.remote_addr or "unknown"
    refused = login_throttle.refusal(username, address)
    if refused is not None:
        flash(
            f"Too many failed logins: {refused.reason}. Try again in {refused.retry_after} s.",
            "error",
        )
        response = make_response(render_template("auth/login.html", username=username), 429)
        response.headers["Retry-After"] = str(refused.retry_after)
        return response
    user = accounts.find_user(username)
    if not login_throttle.authenticate(user, password):
        login_throttle.record_failure(username, address)
        flash("Unknown user or wrong password.", "error")
        return render_template("auth/login.html", username=username), 401
    login_throttle.record_success(username)
    if not user.session_token:  # a row written without the ORM's default
        user.end_sessions()
        db.session.commit()
    login_user(user, remember=bool(request.form.get("remember")))
    return redirect(_safe_next(request.args.get("next")))


@bp.route("/logout", methods=["POST"])
def logout():
    """End the session and every other session of this user, remember-me cookies included
    (POST, so a link on another site cannot log a user out)."""
    if current_user.is_authenticated:
        current_user.end_sessions()
        db.session.commit()
    logout_user()
    return redirect(url_for("auth.login"))
