"""Sessions end when they should: logging out ends every session of that user (cookies saved
before it no longer open a page, remember-me cookies included), and so does a password change."""

from __future__ import annotations

import pytest

from tests.helpers import PASSWORD, csrf_token, make_user

PAGE = "/review/"


@pytest.fixture
def rita(app):
    with app.app_context():
        make_user("rita")
    return "rita"


def logged_in(app, remember: bool = False):
    """A client logged in as rita through the form."""
    client = app.test_client()
    data = {
        "username": "rita",
        "password": PASSWORD,
        "csrf_token": csrf_token(client, "/auth/login"),
    }
    if remember:
        data["remember"] = "1"
    assert client.post("/auth/login", data=data).status_code == 302
    assert client.get(PAGE).status_code == 200
    return client


def cookie(client, name: str) -> str:
    found = client.get_cookie(name)
    assert found is not None, f"no {name} cookie"
    return found.value


def with_cookie(app, name: str, value: str):
    """A fresh client carrying only one saved cookie."""
    client = app.test_client()
    client.set_cookie(name, value)
    return client


def opens_the_page(client) -> bool:
    response = client.get(PAGE)
    assert response.status_code in (200, 302)
    return response.status_code == 200


def log_out(client) -> None:
    token = csrf_token(client, PAGE)
    assert client.post("/auth/logout", data={"csrf_token": token}).status_code == 302


def test_a_saved_session_cookie_dies_with_logout(app, rita):
    client = logged_in(app)
    saved = cookie(client, "session")
    assert opens_the_page(with_cookie(app, "session", saved))
    log_out(client)
    assert not opens_the_page(with_cookie(app, "session", saved))


def test_a_remember_cookie_dies_with_logout(app, rita):
    client = logged_in(app, remember=True)
    remembered = cookie(client, "remember_token")
    assert opens_the_page(with_cookie(app, "remember_token", remembered))
    log_out(client)
    assert not opens_the_page(with_cookie(app, "remember_token", remembered))


def test_logout_on_one_device_ends_the_others(app, rita):
    laptop, phone = logged_in(app), logged_in(app, remember=True)
    log_out(laptop)
    assert not opens_the_page(phone)
    assert opens_the_page(logged_in(app))  # logging in again works


def test_a_password_change_ends_every_session(app, rita, runner):
    client = logged_in(app, remember=True)
    saved, remembered = cookie(client, "session"), cookie(client, "remember_token")
    with app.app_context():  # the users commands run in the app's context
        result = runner.invoke(args=["users", "create", "rita", "--update"], input="a new pw 1\n")
    assert result.exit_code == 0, result.output
    assert not opens_the_page(with_cookie(app, "session", saved))
    assert not opens_the_page(with_cookie(app, "remember_token", remembered))
    assert not opens_the_page(client)
