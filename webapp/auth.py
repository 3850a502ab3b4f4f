"""Who is asking, and whether they may: Flask-Login's hooks, the CSRF rule, role decorators.

Everything about authentication is hooked here, through Flask-Login's public API:

- a page request is the user its session (or remember) cookie names, while that session's token
  is still the user's (:func:`load_user`);
- a request under ``/api/`` that carries ``Authorization: Bearer <token>`` is the token's user,
  even beside a browser session cookie (both loaders ask :func:`bearer_user` first); a bad token
  is a 401 before the view runs;
- anonymous requests get a JSON 401 under ``/api/`` and the login page elsewhere;
- bearer requests need no CSRF token (a browser cannot attach that header from another site);
  every other state-changing request still does.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from flask import Flask, abort, current_app, flash, g, redirect, request
from flask_login import current_user, login_required, login_url

from .errors import json_error
from .extensions import csrf, db, login_manager
from .models import Role, User
from .services.people.tokens import bearer_secret, user_for_secret

API_PREFIX = "/api/"
_BEARER_USER = "realfake.bearer_user"  # the request's bearer user, looked up once

login_manager.login_view = "auth.login"
login_manager.login_message_category = "info"


def is_api_request() -> bool:
    """Whether the request is for the JSON API."""
    return request.path.startswith(API_PREFIX)


def bearer_user() -> User | None:
    """The user of this API request's bearer token (None without one, or for a bad one).

    Looked up once per request (the CSRF check asks first); kept in the request's environ rather
    than ``g``, which can outlive a request when an app context is already pushed.
    """
    if not is_api_request():
        return None
    if _BEARER_USER not in request.environ:
        secret = bearer_secret()
        request.environ[_BEARER_USER] = user_for_secret(secret) if secret else None
    return request.environ[_BEARER_USER]


def load_user(session_id: str) -> User | None:
    """Flask-Login's user loader: the user a session or remember cookie names
    (``<id>:<session token>``) while that token is still the user's (logout and a password
    change rotate it, ending the session); on a bearer API request, the token's user."""
    if is_api_request() and bearer_secret() is not None:
        return bearer_user()
    user_id, _, token = session_id.partition(":")
    if not user_id.isdigit() or len(user_id) > 18 or not token:
        return None  # also sessions from before tokens existed: they log in again
    user = db.session.get(User, int(user_id))
    if user is None or not hmac.compare_digest(user.session_token, token):
        return None
    return user


def load_user_from_request(_request=None) -> User | None:
    """Flask-Login's request loader (no session): API requests authenticate with a token."""
    return bearer_user()


def unauthorized():
    """Anonymous requests: a JSON 401 under /api/, the login page (and back) everywhere else."""
    if is_api_request():
        response = json_error(401, "log in, or send Authorization: Bearer <token>")
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    if login_manager.login_message:
        flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(login_url(login_manager.login_view, next_url=request.url))


def _authenticate_afresh() -> None:
    """Forget a user cached by an earlier request in this application context.

    Flask reuses an application context that is already pushed (tests, scripts), and with it
    ``g``, where Flask-Login caches the current user under ``_login_user``; a request must never
    inherit another request's user, least of all across bearer tokens. Dropping the cache only
    makes Flask-Login ask the loaders above again.
    """
    g.pop("_login_user", None)


def _protect_from_csrf():
    """CSRF for cookie sessions; bearer-token API requests are exempt; a bad token gets 401.

    Anonymous API requests skip the check too: with no session there is nothing to forge,
    and a protected endpoint then answers 401 rather than a confusing CSRF error.
    """
    if is_api_request() and bearer_secret() is not None:
        return unauthorized() if bearer_user() is None else None
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return None
    if is_api_request() and not current_user.is_authenticated:
        return None  # no session to ride on: the view answers 401 if it needs a user
    csrf.protect(apply_exemptions=True)
    return None


def init_app(app: Flask) -> None:
    """Hook the loaders, the 401 answer and the CSRF rule into ``app``."""
    login_manager.user_loader(load_user)
    login_manager.request_loader(load_user_from_request)
    login_manager.unauthorized_handler(unauthorized)
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.before_request(_authenticate_afresh)
    app.before_request(_protect_from_csrf)


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
