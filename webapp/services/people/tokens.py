"""API tokens for scripts: creation, revocation, and bearer authentication of /api/ requests.

Only a token's SHA-256 is stored; the secret is shown once when it is made. A request under
``/api/`` that carries ``Authorization: Bearer <token>`` acts as the token's user with that user's
role. Such requests need no CSRF token (a browser cannot attach that header from another site);
every other state-changing request still does.
"""

from __future__ import annotations

import hashlib
import secrets

from flask import Flask, current_app, flash, g, jsonify, redirect, request
from flask_login import current_user
from flask_login.utils import login_url
from sqlalchemy import select

from ...extensions import csrf, db, login_manager
from ...models import ApiToken, User, utcnow

TOKEN_PREFIX = "rf_"
API_PREFIX = "/api/"


def hash_token(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(user: User, name: str) -> tuple[ApiToken, str]:
    """Make a token for ``user``; returns the row and the secret (shown once, never stored)."""
    name = name.strip()
    if not name:
        raise ValueError("a token needs a name that says what uses it")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name[:120], token_sha256=hash_token(secret))
    db.session.add(token)
    db.session.commit()
    return token, secret


def revoke_token(token: ApiToken) -> ApiToken:
    """Stop a token working from now on (the row stays, for the record)."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.commit()
    return token


def bearer_secret() -> str | None:
    """The token in this request's ``Authorization: Bearer`` header, if there is one."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def user_for_secret(secret: str) -> User | None:
    """The enabled user a live (not revoked) token belongs to; records when it was last used."""
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_sha256 == hash_token(secret)))
    if token is None or token.revoked_at is not None or not token.user.is_enabled:
        return None
    token.last_used_at = utcnow()
    db.session.commit()
    return token.user


def _is_api_request() -> bool:
    return request.path.startswith(API_PREFIX)


def _load_user_from_bearer(_request=None) -> User | None:
    """Flask-Login request loader: API requests authenticate with a bearer token."""
    if not _is_api_request():
        return None
    # Looked up once per request (the CSRF check asks first); kept in the request's environ
    # rather than ``g``, which can outlive a request when an app context is already pushed.
    key = "realfake.bearer_user"
    if key not in request.environ:
        secret = bearer_secret()
        request.environ[key] = user_for_secret(secret) if secret else None
    return request.environ[key]


def _unauthorized():
    """401 JSON for the API; for pages, the usual redirect to the login form."""
    if _is_api_request():
        response = jsonify(
            {
                "error": "Unauthorized",
                "message": "log in, or send Authorization: Bearer <token>",
                "status": 401,
            }
        )
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    if login_manager.login_message:
        flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(login_url(login_manager.login_view, next_url=request.url))


def _authenticate_afresh() -> None:
    """Forget a user cached in ``g`` by an earlier request.

    Flask reuses an application context that is already pushed (tests, scripts), and with it
    ``g``, where Flask-Login caches the current user; a request must never inherit another
    request's user, least of all across bearer tokens.
    """
    g.pop("_login_user", None)


def _protect_from_csrf():
    """CSRF for cookie sessions; bearer-token API requests are exempt and act as the token's
    user; a bad token gets 401.

    Anonymous API requests skip the check too: with no session there is nothing to forge,
    and a protected endpoint then answers 401 rather than a confusing CSRF error.
    """
    if _is_api_request() and bearer_secret() is not None:
        user = _load_user_from_bearer()
        if user is None:
            return _unauthorized()
        g._login_user = user  # the token's user, even beside a browser session cookie
        return None
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return None
    if _is_api_request() and not current_user.is_authenticated:
        return None  # no session to ride on: the view answers 401 if it needs a user
    csrf.protect(apply_exemptions=True)
    return None


def init_app(app: Flask) -> None:
    """Install bearer authentication, JSON 401s for the API and the CSRF rule on ``app``."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    login_manager.request_loader(_load_user_from_bearer)
    login_manager.unauthorized_handler(_unauthorized)
    app.before_request(_authenticate_afresh)
    app.before_request(_protect_from_csrf)
