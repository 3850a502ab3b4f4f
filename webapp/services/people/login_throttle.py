"""Login throttling shared by every web worker and process (the counts live in the database).

Two limits, both on failed logins only, so a right password is never spent against them:

- **Per account, with back-off.** After ``LOGIN_FREE_FAILURES`` failures of one user name in a
  row, each further try must wait twice as long as the one before (1 s, 2 s, 4 s, ... at most
  ``LOGIN_MAX_BACKOFF`` seconds). A success clears the name's count.
- **Per address, against spraying.** An address whose failures in the last ``LOGIN_WINDOW``
  seconds span ``LOGIN_ADDRESS_NAMES`` different names may not try further names until those
  failures age out. The names it has already tried stay under their own (per account) limit,
  so one person mistyping, or an attacker hammering one account, never locks out the other
  accounts of everyone behind the same address.

A refused try is answered with 429 and ``Retry-After``. Unknown names are counted like known ones
and their password is checked against a dummy hash, so neither the answer nor its time tells
whether a name exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select
from werkzeug.security import check_password_hash, generate_password_hash

from ...extensions import db
from ...models import LoginFailure, User, utcnow

KEEP_FAILURES = timedelta(days=1)


@dataclass(frozen=True)
class Refusal:
    """Why a login may not be tried now, and in how many seconds it may."""

    reason: str
    retry_after: int


def _settings() -> tuple[int, int, int, int]:
    config = current_app.config
    return (
        config["LOGIN_FREE_FAILURES"],
        config["LOGIN_MAX_BACKOFF"],
        config["LOGIN_ADDRESS_NAMES"],
        config["LOGIN_WINDOW"],
    )


def refusal(username: str, address: str, now: datetime | None = None) -> Refusal | None:
    """Whether a login as ``username`` from ``address`` must wait (None: it may be tried)."""
    now = now or utcnow()
    free, max_backoff, address_names, window = _settings()
    count, latest = db.session.execute(
        select(func.count(LoginFailure.id), func.max(LoginFailure.created_at)).where(
            LoginFailure.username == username[:80]
        )
    ).one()
    if count >= free:
        wait = min(2 ** (count - free), max_backoff)
        remaining = (latest + timedelta(seconds=wait) - now).total_seconds()
        if remaining > 0:
            return Refusal("too many failed logins for this name", math.ceil(remaining))
    since = now - timedelta(seconds=window)
    recent = select(LoginFailure).where(
        LoginFailure.address == address, LoginFailure.created_at > since
    )
    names = set(db.session.scalars(recent.with_only_columns(LoginFailure.username)))
    if len(names) >= address_names and username[:80] not in names:
        oldest = db.session.scalar(recent.with_only_columns(func.min(LoginFailure.created_at)))
        remaining = (oldest + timedelta(seconds=window) - now).total_seconds()
        return Refusal("too many names tried from this address", max(1, math.ceil(remaining)))
    return None


def record_failure(username: str, address: str) -> None:
    """Count a failed login (and forget failures too old to matter)."""
    now = utcnow()
    db.session.execute(delete(LoginFailure).where(LoginFailure.created_at < now - KEEP_FAILURES))
    db.session.add(LoginFailure(username=username[:80], address=address[:64], created_at=now))
    db.session.commit()


def record_success(username: str) -> None:
    """A right password clears its name's failures."""
    db.session.execute(delete(LoginFailure).where(LoginFailure.username == username[:80]))
    db.session.commit()


def _dummy_hash() -> str:
    """A hash made like a real one, for unknown names (made once per process)."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = generate_password_hash("no user has this password", method="scrypt")
    return _DUMMY_HASH


_DUMMY_HASH: str | None = None


def authenticate(user: User | None, password: str) -> bool:
    """Whether ``password`` is right for an enabled ``user``; as slow for an unknown or
    disabled user as for a real one (the hash is always computed)."""
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return False
    right = user.check_password(password)
    return right and user.is_enabled
