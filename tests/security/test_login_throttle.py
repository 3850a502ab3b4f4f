"""Login throttling: counted in the database (every worker and process sees the same failures),
per account with back-off and per address against spraying; it never refuses the right password
of an account nobody attacked, answers 429 with Retry-After, and treats unknown names exactly
like known ones."""

from __future__ import annotations

import pytest
import werkzeug.security
from sqlalchemy import func, select

from tests.helpers import PASSWORD, csrf_token, make_user
from webapp import config as app_config
from webapp import create_app
from webapp.extensions import db
from webapp.models import LoginFailure
from webapp.services.people import login_throttle

ATTACKER = "203.0.113.7"


@pytest.fixture
def people(app):
    with app.app_context():
        for name in ("rita", "sam"):
            make_user(name)
    return app


def attempt(app, username: str, password: str, address: str = ATTACKER):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    token = csrf_token(client, "/auth/login")
    data = {"username": username, "password": password, "csrf_token": token}
    return client.post("/auth/login", data=data)


def burst(app, username: str, times: int = 5, address: str = ATTACKER) -> None:
    """Wrong passwords; once the account is throttled they are refused (429) instead."""
    for _ in range(times):
        assert attempt(app, username, "wrong guess", address).status_code in (401, 429)


def test_the_count_is_shared_by_every_worker(people):
    """Two app instances on one database, as two gunicorn workers are: failures made on one
    lock the account on the other."""
    other_worker = create_app(app_config.TestConfig())
    burst(people, "rita", 3)
    burst(other_worker, "rita", 2)
    refused = attempt(other_worker, "rita", PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "Too many failed logins" in refused.get_data(as_text=True)
    with other_worker.app_context():
        db.session.remove()
        db.engine.dispose()


def test_an_attack_on_one_account_leaves_the_others_open_from_the_same_address(people):
    burst(people, "rita", 8)
    assert attempt(people, "rita", PASSWORD).status_code == 429
    assert attempt(people, "sam", PASSWORD).status_code == 302


def test_the_wait_doubles_with_each_failure_past_the_free_ones(people):
    with people.app_context():
        for _ in range(7):
            login_throttle.record_failure("rita", ATTACKER)
        latest = db.session.scalar(select(func.max(LoginFailure.created_at)))
        assert login_throttle.refusal("rita", ATTACKER, now=latest).retry_after == 4
        login_throttle.record_failure("rita", ATTACKER)
        latest = db.session.scalar(select(func.max(LoginFailure.created_at)))
        assert login_throttle.refusal("rita", ATTACKER, now=latest).retry_after == 8


def test_a_right_password_clears_the_count(people):
    burst(people, "rita", 4)
    assert attempt(people, "rita", PASSWORD).status_code == 302
    burst(people, "rita", 4)  # four more wrong ones are still free
    assert attempt(people, "rita", PASSWORD).status_code == 302


def test_spraying_many_names_from_one_address_is_stopped(people):
    for number in range(10):
        assert attempt(people, f"guess{number}", "password1").status_code == 401
    refused = attempt(people, "sam", PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert attempt(people, "sam", PASSWORD, address="198.51.100.1").status_code == 302


def test_unknown_names_are_throttled_and_hashed_like_known_ones(people, monkeypatch):
    hashed = []
    real_check = werkzeug.security.check_password_hash

    def counting_check(pwhash: str, password: str) -> bool:
        hashed.append(pwhash.split("$")[0])
        return real_check(pwhash, password)

    monkeypatch.setattr(werkzeug.security, "check_password_hash", counting_check)
    monkeypatch.setattr("webapp.models.check_password_hash", counting_check)
    monkeypatch.setattr(login_throttle, "check_password_hash", counting_check)
    assert attempt(people, "nobody", "whatever").status_code == 401
    assert attempt(people, "rita", "whatever").status_code == 401
    assert len(hashed) == 2 and hashed[0] == hashed[1]  # the same kind of hash, both times
    burst(people, "nobody", 4)
    assert attempt(people, "nobody", "whatever").status_code == 429
