"""Session cookie flags and the security headers every response carries."""

from __future__ import annotations

import pytest

from tests.helpers import ADMIN_PAGES, csrf_token, make_user
from webapp import config as app_config
from webapp import create_app
from webapp.security import CONTENT_SECURITY_POLICY


def cookie_headers(response, name: str) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]


def flags(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


def log_in(app, remember: bool = False):
    with app.app_context():
        make_user("rita")
    client = app.test_client()
    token = csrf_token(client, "/auth/login")
    form = {"username": "rita", "password": "correct horse battery", "csrf_token": token}
    if remember:
        form["remember"] = "1"
    return client.post("/auth/login", data=form)


def test_session_cookie_is_httponly_samesite_and_not_secure_over_http(app):
    response = log_in(app, remember=True)
    assert response.status_code == 302
    for name in ("session", "remember_token"):
        (header,) = cookie_headers(response, name)
        assert {"httponly", "samesite=lax", "path=/"} <= flags(header), header
        assert "secure" not in flags(header)  # would never come back over plain HTTP
    assert "Strict-Transport-Security" not in response.headers


@pytest.fixture
def https_app(tmp_path, monkeypatch):
    """The app configured for HTTPS with REALFAKE_SECURE_COOKIES=1."""
    from flask_migrate import upgrade

    from webapp.extensions import db

    monkeypatch.setenv("REALFAKE_INSTANCE", str(tmp_path / "https"))
    monkeypatch.setenv("REALFAKE_SECURE_COOKIES", "1")
    app = create_app(app_config.TestConfig())
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_secure_cookies_switch_marks_every_cookie_secure(https_app):
    response = log_in(https_app, remember=True)
    assert response.status_code == 302
    for name in ("session", "remember_token"):
        (header,) = cookie_headers(response, name)
        assert {"secure", "httponly", "samesite=lax"} <= flags(header), header
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize(
    "url, role",
    [
        ("/auth/login", None),
        ("/review/", "reviewer"),
        ("/admin/", "admin"),
        ("/api/v1/queue", "reviewer"),
        ("/static/css/app.css", None),
        ("/no/such/page", None),
        ("/api/v1/openapi.json", None),
    ],
)
def test_every_response_carries_the_security_headers(auth, client, url, role):
    if role:
        auth.login(role)
    response = client.get(url)
    response.close()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    policy = response.headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["frame-ancestors"] == "'none'"
    assert directives["script-src"] == "'self'"  # no inline script, no eval
    assert directives["object-src"] == "'none'"


def test_pages_have_no_inline_scripts_the_policy_would_block(auth, client, app):
    """Every page a user opens, read for what a 'self'-only script policy refuses."""
    auth.login("admin")
    for url in ADMIN_PAGES:
        html = client.get(url).get_data(as_text=True)
        assert "<script>" not in html and "<script type" not in html, url
        assert " onclick=" not in html and " onchange=" not in html and " onload=" not in html
        assert "javascript:" not in html, url


def login_with_next(client, target: str):
    client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/auth/login")})
    token = csrf_token(client, "/auth/login")
    return client.post(
        "/auth/login",
        query_string={"next": target},
        data={"username": "rita", "password": "correct horse battery", "csrf_token": token},
    )


@pytest.mark.parametrize(
    "target", ["//evil.example/", "/\\evil.example/", "https://evil.example/", "/\t/evil.example"]
)
def test_login_never_redirects_to_another_site(app, client, target):
    with app.app_context():
        make_user("rita")
    response = login_with_next(client, target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_login_keeps_a_same_site_next_page(app, client):
    with app.app_context():
        make_user("rita")
    response = login_with_next(client, "/reports/?format=csv")
    assert response.headers["Location"] == "/reports/?format=csv"
