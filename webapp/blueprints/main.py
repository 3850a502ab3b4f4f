"""The landing page: reviewers go to their queue, admins to the overview."""

from __future__ import annotations

import re

from flask import Blueprint, redirect, render_template, send_from_directory, url_for
from flask_login import current_user, login_required
from markupsafe import Markup, escape

bp = Blueprint("main", __name__)
INLINE_CODE = re.compile(r"(`{1,2})([^`]+)\1")  # Markdown `x` and reStructuredText ``x``


@bp.app_template_filter("inline_code")
def inline_code(text: str | None) -> Markup:
    """Text written with `code` spans (docstrings in ``x``, the API description in `x`) as
    HTML: escaped, each span in <code>, so pages show no literal backticks."""
    escaped = str(escape(text or ""))
    return Markup(INLINE_CODE.sub(r"<code>\2</code>", escaped))


@bp.route("/")
@login_required
def index():
    """Send each role to where their work is."""
    if current_user.is_admin and "admin.overview" in _endpoints():
        return redirect(url_for("admin.overview"))
    if "review.desk" in _endpoints():
        return redirect(url_for("review.desk"))
    return render_template("base.html")


@bp.route("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever the page says: serve the same icon."""
    from flask import current_app

    return send_from_directory(
        current_app.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400
    )


def _endpoints() -> set[str]:
    from flask import current_app

    return set(current_app.view_functions)
