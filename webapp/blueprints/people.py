"""Admin pages for people and the record: the Users page and the Audit page."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth import admin_required
from ..extensions import db
from ..models import User
from ..services.people import accounts
from ..services.records import audit_trail

bp = Blueprint("people", __name__, url_prefix="/admin")
AUDIT_PAGE = 100


@bp.get("/users")
@admin_required
def users():
    """Every account, with forms to add one and to change each."""
    return render_template("admin/users.html", users=accounts.all_users())


@bp.post("/users")
@admin_required
def create_user():
    """Add an account."""
    form = request.form
    try:
        user = accounts.create_user(
            form.get("username", ""), form.get("password", ""), form.get("role", ""), current_user
        )
    except accounts.AccountError as error:
        flash(f"No account was made: {error}.", "error")
    else:
        flash(f"Account {user.username} ({user.role}) made.", "info")
    return redirect(url_for("people.users"))


@bp.post("/users/<int:user_id>")
@admin_required
def change_user(user_id: int):
    """One change to an account: ``action`` is disable, enable, password or role."""
    user = db.get_or_404(User, user_id)
    action = request.form.get("action")
    try:
        if action in ("disable", "enable"):
            accounts.set_enabled(user, action == "enable", current_user)
            done = f"{user.username} is {'enabled' if user.is_enabled else 'disabled'}"
        elif action == "password":
            accounts.reset_password(user, request.form.get("password", ""), current_user)
            done = f"{user.username}'s password was reset"
        elif action == "role":
            accounts.set_role(user, request.form.get("role", ""), current_user)
            done = f"{user.username} is now {user.role}"
        else:
            raise accounts.AccountError(f"unknown change {action!r}")
    except accounts.AccountError as error:
        db.session.rollback()
        flash(f"Nothing was changed: {error}.", "error")
    else:
        flash(f"{done}.", "info")
    return redirect(url_for("people.users"))


def _trail_filter() -> audit_trail.TrailFilter:
    args = request.args

    def day(name: str) -> date | None:
        try:
            return date.fromisoformat(args.get(name, ""))
        except ValueError:
            return None

    action = args.get("action", "")
    return audit_trail.TrailFilter(
        user=args.get("user", "").strip(),
        image=args.get("image", "").strip(),
        action=action if action in audit_trail.ACTIONS else "",
        since=day("since"),
        until=day("until"),
    )


@bp.get("/audit")
@admin_required
def audit():
    """The audit trail, newest first, filtered by user, image, action and date."""
    chosen = _trail_filter()
    page = max(request.args.get("page", 1, type=int), 1)
    entries = audit_trail.trail(chosen, limit=AUDIT_PAGE + 1, offset=(page - 1) * AUDIT_PAGE)
    query = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template(
        "admin/audit.html",
        entries=entries[:AUDIT_PAGE],
        chosen=chosen,
        actions=audit_trail.ACTIONS,
        usernames=audit_trail.usernames(),
        next_url=url_for("people.audit", **query, page=page + 1)
        if len(entries) > AUDIT_PAGE
        else None,
        csv_url=url_for("people.audit_csv", **query),
    )


@bp.get("/audit.csv")
@admin_required
def audit_csv():
    """The filtered trail as a CSV file."""
    body = audit_trail.trail_csv(_trail_filter())
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit-trail.csv"'},
    )
