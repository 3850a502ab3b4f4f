"""Accounts: create users, disable and enable them, reset passwords, change roles.

Every change is written to the audit trail with the admin who made it (or ``cli`` for the
command line), in the same transaction as the change. The desk must always keep
one admin who can log in: disabling or demoting the last enabled admin is refused.
"""

from __future__ import annotations

from sqlalchemy import func, select

from ...extensions import db
from ...models import Role, User
from ..records import audit_trail

MIN_PASSWORD = 8


class AccountError(ValueError):
    """A change that cannot be made; the message says why, and nothing was changed."""


def all_users() -> list[User]:
    """Every account, by user name."""
    return list(db.session.scalars(select(User).order_by(User.username)))


def find_user(username: str) -> User | None:
    """The account called ``username``, if there is one."""
    return db.session.scalar(select(User).where(User.username == username))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")


def _check_role(role: str) -> None:
    if role not in (Role.ADMIN, Role.REVIEWER):
        raise AccountError(f"unknown role {role!r}: choose admin or reviewer")


def enabled_admins() -> int:
    """How many admins can log in."""
    return (
        db.session.scalar(
            select(func.count(User.id)).where(User.role == Role.ADMIN, User.is_enabled.is_(True))
        )
        or 0
    )


def _refuse_losing_last_admin(user: User) -> None:
    if user.role == Role.ADMIN and user.is_enabled and enabled_admins() <= 1:
        raise AccountError(
            f"{user.username} is the last admin who can log in; make another admin first"
        )


def create_user(username: str, password: str, role: str, actor: User | str | None) -> User:
    """A new account with ``role``; refuses an empty, too long or taken name."""
    username = username.strip()
    longest = User.__table__.c.username.type.length
    if not username or len(username) > longest:
        raise AccountError(f"a user name has 1 to {longest} characters")
    if db.session.scalar(select(User.id).where(User.username == username)):
        raise AccountError(f"the name {username!r} is taken")
    _check_role(role)
    _check_password(password)
    user = User(username=username, role=role)
    user.set_password(password)
    db.session.add(user)
    audit_trail.record("user-created", username, f"created as {role}", user=actor)
    db.session.commit()
    return user


def set_enabled(user: User, enabled: bool, actor: User | str | None) -> None:
    """Disable (cannot log in, tokens stop working with it) or enable an account."""
    if user.is_enabled == enabled:
        return
    if not enabled:
        _refuse_losing_last_admin(user)
    user.is_enabled = enabled
    action = "user-enabled" if enabled else "user-disabled"
    audit_trail.record(action, user.username, "", user=actor)
    db.session.commit()


def reset_password(user: User, password: str, actor: User | str | None) -> None:
    """Give the account a new password (the admin tells its owner)."""
    _check_password(password)
    user.set_password(password)
    audit_trail.record("password-reset", user.username, "", user=actor)
    db.session.commit()


def set_role(user: User, role: str, actor: User | str | None) -> None:
    """Make the account an admin or a reviewer; the last admin stays an admin."""
    _check_role(role)
    if user.role == role:
        return
    if role != Role.ADMIN:
        _refuse_losing_last_admin(user)
    before, user.role = user.role, role
    audit_trail.record("role-changed", user.username, f"{before} to {role}", user=actor)
    db.session.commit()
