"""Roles and the decorators that enforce them, for pages and for the JSON API."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from flask import abort, flash, redirect, request
from flask_login import current_user, login_required, login_url

from .extensions import db, login_manager
from .models import Role, User


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user a session or remember cookie names (``<id>:<session token>``), while that
    token is still the user's: logout and a password change rotate it, ending the session."""
    user_id, _, token = session_id.partition(":")
    if not user_id.isdigit() or len(user_id) > 18 or not token:
        return None  # also sessions from before tokens existed: they log in again
    user = db.session.get(User, int(user_id))
    if user is None or not hmac.compare_digest(user.session_token, token):
        return None
    return user


login_manager.login_view = "auth.login"
login_manager.login_message_category = "info"


@login_manager.unauthorized_handler
def unauthorized():
    """Anonymous requests: 401 (JSON) under /api/, the login page (and back) everywhere else."""
    if request.path.startswith("/api/"):
        abort(401, description="Log in first.")
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(login_url(login_manager.login_view, next_url=request.url))


def role_required(*roles: Role) -> Callable:
    """Allow the view to users with one of ``roles`` (admins pass every reviewer check)."""

    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapped(*args, **kwargs):
            allowed = set(roles) | {Role.ADMIN}
            if current_user.role not in allowed:
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_roles = tuple(roles)
        return wrapped

    return decorator


reviewer_required = role_required(Role.REVIEWER)
admin_required = role_required(Role.ADMIN)
