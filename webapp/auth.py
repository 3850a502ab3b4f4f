"""Roles and the decorators that enforce them, for pages and for the JSON API."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort
from flask_login import current_user, login_required

from .extensions import db, login_manager
from .models import Role, User


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


login_manager.login_view = "auth.login"
login_manager.login_message_category = "info"


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
