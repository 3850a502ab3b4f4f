"""API tokens: made by admins (page and CLI), bearer authentication, revocation, CSRF rules."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.factories import make_dataset, make_version
from tests.helpers import csrf_token, make_user
from webapp.extensions import db
from webapp.models import ApiToken
from webapp.services.people.tokens import create_token, hash_token, revoke_token


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def secrets(app):
    """A live reviewer token, a live admin token and a revoked reviewer token."""
    with app.app_context():
        make_version("v1", active=True)
        make_dataset("main")
        reviewer, admin = make_user("rita"), make_user("adam", role="admin")
        _, reviewer_secret = create_token(reviewer, "rita's script")
        _, admin_secret = create_token(admin, "nightly")
        revoked, revoked_secret = create_token(reviewer, "old laptop")
        revoke_token(revoked)
    return {"reviewer": reviewer_secret, "admin": admin_secret, "revoked": revoked_secret}


def assert_json_401(response):
    assert response.status_code == 401
    assert response.is_json and response.get_json()["status"] == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_only_the_hash_is_stored(app_ctx):
    user = make_user("rita")
    token, secret = create_token(user, "script")
    stored = db.session.scalar(select(ApiToken).where(ApiToken.id == token.id))
    assert stored.token_sha256 == hash_token(secret) != secret
    assert secret not in repr(stored.__dict__)
    with pytest.raises(ValueError, match="needs a name"):
        create_token(user, "   ")


def test_valid_token_acts_as_its_user(client, secrets, app):
    response = client.get("/api/v1/versions", headers=bearer(secrets["reviewer"]))
    assert response.status_code == 200
    assert [v["name"] for v in response.get_json()] == ["v1"]
    assert "Set-Cookie" not in response.headers  # scripts get no session
    with app.app_context():
        token = db.session.scalar(select(ApiToken).where(ApiToken.name == "rita's script"))
        assert token.last_used_at is not None


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer rf_not-a-token",
        "Bearer ",
        "Basic cml0YTpwYXNz",
    ],
)
def test_missing_or_wrong_token_is_401_json(client, secrets, header):
    headers = {"Authorization": header} if header else {}
    assert_json_401(client.get("/api/v1/versions", headers=headers))


def test_revoked_token_is_401(client, secrets):
    assert_json_401(client.get("/api/v1/versions", headers=bearer(secrets["revoked"])))


def test_disabled_user_token_is_401(client, secrets, app):
    with app.app_context():
        user = make_user("rita")
        user.is_enabled = False
        db.session.commit()
    assert_json_401(client.get("/api/v1/versions", headers=bearer(secrets["reviewer"])))


def test_token_does_not_open_pages(client, secrets):
    response = client.get("/admin/", headers=bearer(secrets["admin"]))
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_bearer_post_needs_no_csrf(client, secrets):
    response = client.post(
        "/api/v1/reports",
        json={"report": "labels", "format": "csv"},
        headers=bearer(secrets["reviewer"]),
    )
    assert response.status_code == 202
    assert response.get_json()["kind"] == "report"


def test_wrong_token_post_is_401_not_a_csrf_error(client, secrets):
    response = client.post("/api/v1/reports", json={"format": "csv"}, headers=bearer("rf_wrong"))
    assert_json_401(response)


def test_cookie_session_post_needs_csrf(client, secrets, auth):
    auth.login("reviewer")
    body = {"report": "labels", "format": "csv"}
    response = client.post("/api/v1/reports", json=body)
    assert response.status_code == 400
    assert "CSRF" in response.get_json()["error"]
    token = csrf_token(client, "/reports/")
    response = client.post("/api/v1/reports", json=body, headers={"X-CSRFToken": token})
    assert response.status_code == 202


def test_cookie_session_page_post_still_needs_csrf(client, secrets, auth):
    auth.login("admin")
    assert client.post("/admin/train", data={}).status_code == 400


def test_admin_makes_and_revokes_tokens_on_the_page(client, auth, app):
    auth.login("admin")
    with app.app_context():
        reviewer_id = make_user("rita").id
    token = csrf_token(client, "/admin/tokens")
    page = client.post(
        "/admin/tokens", data={"csrf_token": token, "user_id": reviewer_id, "name": "ci"}
    ).get_data(as_text=True)
    secret = re.search(r'<pre id="new-token">([^<]+)</pre>', page).group(1)
    assert client.get("/admin/tokens").get_data(as_text=True).count(secret) == 0  # shown once
    api = app.test_client()
    assert api.get("/api/v1/versions", headers=bearer(secret)).status_code == 200
    with app.app_context():
        token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.name == "ci"))
    client.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": token})
    assert_json_401(api.get("/api/v1/versions", headers=bearer(secret)))


def test_token_page_refuses_a_nameless_token(client, auth, app):
    auth.login("admin")
    with app.app_context():
        reviewer_id = make_user("rita").id
    token = csrf_token(client, "/admin/tokens")
    page = client.post(
        "/admin/tokens", data={"csrf_token": token, "user_id": reviewer_id, "name": " "}
    ).get_data(as_text=True)
    assert "needs a name" in page and 'id="new-token"' not in page


def test_reviewer_cannot_open_the_tokens_page(client, auth):
    auth.login("reviewer")
    assert client.get("/admin/tokens").status_code == 403


def test_cli_makes_a_working_token_and_revokes_it(app, client):
    with app.app_context():
        make_user("adam", role="admin")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "token", "adam", "--label", "cron"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("rf_")
    assert client.get("/api/v1/versions", headers=bearer(secret)).status_code == 200
    with app.app_context():
        token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.name == "cron"))
    result = runner.invoke(args=["users", "revoke-token", str(token_id)])
    assert result.exit_code == 0 and "revoked" in result.output
    assert_json_401(client.get("/api/v1/versions", headers=bearer(secret)))
    result = runner.invoke(args=["users", "token", "nobody", "--label", "x"])
    assert result.exit_code == 1 and "no user 'nobody'" in result.output


def test_token_user_wins_over_a_session_cookie(client, secrets, auth):
    auth.login("admin")
    response = client.post("/api/v1/versions/v1/activate", headers=bearer(secrets["reviewer"]))
    assert response.status_code == 403
