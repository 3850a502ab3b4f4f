"""``flask users create NAME --role reviewer|admin``, ``users token NAME --label TEXT``.

Every account and token change made here is in the audit trail, by the actor ``cli``.
"""

from __future__ import annotations

import sys

import click
from sqlalchemy import select

from ..extensions import db
from ..models import Role, User
from ..services.people import accounts
from ..services.records.audit_trail import CLI_ACTOR


@click.group("users", help="Manage reviewer and admin accounts.")
def group() -> None:
    pass


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@group.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), default="reviewer")
@click.option("--update", is_flag=True, help="Set the password and role if the user exists.")
def create(name: str, role: str, update: bool) -> None:
    """Create a user; the password is prompted for, or read from stdin when piped.

    Each change is written to the audit trail as the Users page writes it, by ``cli``.
    """
    longest = User.__table__.c.username.type.length
    if not name.strip() or len(name) > longest:
        raise click.ClickException(f"a user name has 1 to {longest} characters")
    user = db.session.scalar(select(User).where(User.username == name))
    if user is not None and not update:
        raise click.ClickException(f"user {name!r} exists (use --update to change it)")
    password = _read_password()
    if len(password) < accounts.MIN_PASSWORD:
        raise click.ClickException(
            f"the password must have at least {accounts.MIN_PASSWORD} characters"
        )
    try:
        if user is None:
            accounts.create_user(name, password, role, CLI_ACTOR)
        else:
            accounts.set_role(user, role, CLI_ACTOR)  # may refuse: before the password changes
            accounts.reset_password(user, password, CLI_ACTOR)
    except accounts.AccountError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from error
    click.echo(f"{'updated' if user is not None else 'created'} {role} {name}")


@group.command("list")
def list_users() -> None:
    """List accounts and roles."""
    for user in db.session.scalars(select(User).order_by(User.username)):
        click.echo(f"{user.username}\t{user.role}\t{'enabled' if user.is_enabled else 'disabled'}")


@group.command("token")
@click.argument("name")
@click.option("--label", required=True, help="What the token is for (shown on the tokens page).")
def token(name: str, label: str) -> None:
    """Make an API token for user NAME; it is printed once and only its hash is kept."""
    from ..services.people.tokens import create_token

    user = db.session.scalar(select(User).where(User.username == name))
    if user is None:
        raise click.ClickException(f"no user {name!r}")
    try:
        row, secret = create_token(user, label, CLI_ACTOR)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"token {row.id} for {user.username} ({user.role}), {row.name!r}:", err=True)
    click.echo(secret)


@group.command("revoke-token")
@click.argument("token_id", type=int)
def revoke_token(token_id: int) -> None:
    """Revoke API token TOKEN_ID (see the admin tokens page for ids)."""
    from ..models import ApiToken
    from ..services.people.tokens import revoke_token as revoke

    row = db.session.get(ApiToken, token_id)
    if row is None:
        raise click.ClickException(f"no token {token_id}")
    revoke(row, CLI_ACTOR)
    click.echo(f"revoked token {row.id} ({row.name!r}) of {row.user.username}")
