"""API tokens for scripts: creation, revocation, and finding the user a bearer token names.

Only a token's SHA-256 is stored; the secret is shown once when it is made. A request under
``/api/`` that carries ``Authorization: Bearer <token>`` acts as the token's user with that user's
role; :mod:`webapp.auth` hooks this into Flask-Login.
"""

from __future__ import annotations

import hashlib
import secrets

from flask import request
from sqlalchemy import select

from ...extensions import db
from ...models import ApiToken, User, utcnow
from ..records import audit_trail

TOKEN_PREFIX = "rf_"


def hash_token(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(user: User, name: str, actor: User | str | None = None) -> tuple[ApiToken, str]:
    """Make a token for ``user``; returns the row and the secret (shown once, never stored).

    The audit trail records who made it (``actor``: an account, or ``cli``) and whom it acts
    as, in the same transaction; never the secret.
    """
    name = name.strip()
    if not name:
        raise ValueError("a token needs a name that says what uses it")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name[:120], token_sha256=hash_token(secret))
    db.session.add(token)
    audit_trail.record("token-created", token.name, f"acts as {user.username}", user=actor)
    db.session.commit()
    return token, secret


def all_tokens() -> list[ApiToken]:
    """Every token, revoked ones included (the record), the newest first."""
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.id.desc())))


def revoke_token(token: ApiToken, actor: User | str | None = None) -> ApiToken:
    """Stop a token working from now on (the row stays, for the record); audited like
    :func:`create_token`."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit_trail.record(
            "token-revoked", token.name, f"acted as {token.user.username}", user=actor
        )
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
