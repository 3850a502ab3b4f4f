"""The role matrix: every registered route, as anonymous, reviewer and admin, gets exactly its role.

Data-driven, so it covers routes added later by any blueprint: each view declares its roles through
the ``reviewer_required`` / ``admin_required`` decorators (``view.required_roles``); a route that
declares nothing must be listed here as public or as open to any logged-in user, else the test
fails. Admins pass every check; reviewers pass reviewer checks; anonymous users pass only public
routes (pages send them to the login form, the API answers 401).
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from werkzeug.routing import Rule
from werkzeug.routing.converters import NumberConverter

from tests.factories import make_scored_image, make_version
from tests.helpers import csrf_token, login, make_user
from webapp.extensions import db
from webapp.models import User

# The API description is public: it holds no data, and scripts read it before they have a token.
# The favicon: browsers fetch it before anyone logs in, and it is a static picture.
PUBLIC = {
    "static",
    "main.favicon",
    "auth.login",
    "auth.logout",
    "api_admin.openapi_json",
    "api_admin.docs",
}
ANY_LOGGED_IN = {"main.index"}  # sends each role on to its own start page
SKIPPED_METHODS = {"HEAD", "OPTIONS"}
ROLES = ("anonymous", "reviewer", "admin")


@pytest.fixture(autouse=True)
def _push_request_context():
    """No shared request context: three clients must be three different users."""
    yield


def declared_roles(app, endpoint: str) -> set[str] | None:
    """The roles a route admits, or None when it declares none."""
    if endpoint in PUBLIC:
        return set(ROLES)
    if endpoint in ANY_LOGGED_IN:
        return {"reviewer", "admin"}
    roles = getattr(app.view_functions[endpoint], "required_roles", None)
    if roles is None:
        return None
    return {"admin"} | {str(role) for role in roles}


def sample_url(app, rule: Rule) -> str:
    """The rule's URL with a plausible value for each argument (ids exist as 1)."""
    values = {}
    for name in rule.arguments:
        numeric = isinstance(rule._converters[name], NumberConverter)
        values[name] = 1 if numeric else "x"
    if rule.endpoint == "static":
        values["filename"] = "css/app.css"
    return app.url_map.bind("localhost").build(rule.endpoint, values, method=None)


def denied(role: str, endpoint: str, response) -> bool:
    """Whether the response refuses this role."""
    if endpoint in PUBLIC:  # a 401 from the login form is a wrong password, not a role check
        return response.status_code == 403
    if response.status_code in (401, 403):
        return True
    location = response.headers.get("Location", "")
    return role == "anonymous" and response.status_code == 302 and "/auth/login" in location


@pytest.fixture
def clients(app):
    """One client per role, logged in, each with its CSRF token; plus data so id 1 exists."""
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a view that crashes answers 500, not the test
    with app.app_context():
        make_scored_image(make_version("v1"), 0.5, label="unknown")
        make_user("rita", role="reviewer")
        make_user("adam", role="admin")
    result = {}
    for role, username in (("anonymous", None), ("reviewer", "rita"), ("admin", "adam")):
        client = app.test_client()
        if username:
            assert login(client, username).status_code == 302
        result[role] = (client, csrf_token(client, "/auth/login"))
    return result


def test_every_route_declares_its_roles(app):
    undeclared = sorted(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if declared_roles(app, rule.endpoint) is None
    )
    assert undeclared == [], f"routes without a role: {undeclared}"


def test_role_matrix(app, clients):
    mismatches = []
    rules = sorted(app.url_map.iter_rules(), key=lambda r: (r.endpoint, r.rule))
    for role in ROLES:  # admin last: its requests are the only ones that can change much
        client, token = clients[role]
        for rule in rules:
            if rule.endpoint == "auth.logout" and role != "anonymous":
                continue  # logging out would end the session under test
            allowed = role in declared_roles(app, rule.endpoint)
            url = sample_url(app, rule)
            for method in sorted(rule.methods - SKIPPED_METHODS, key=lambda m: m != "GET"):
                response = client.open(url, method=method, headers={"X-CSRFToken": token})
                response.close()
                if denied(role, rule.endpoint, response) == allowed:
                    mismatches.append(f"{role} {method} {url}: {response.status_code}")
    assert mismatches == []


def test_matrix_would_catch_a_route_without_a_role(app):
    @app.route("/forgotten")
    def forgotten():
        return "open to all"

    assert declared_roles(app, "forgotten") is None


def test_reviewers_cannot_open_admin_pages_but_admins_can_review(app, clients):
    reviewer, _ = clients["reviewer"]
    admin, _ = clients["admin"]
    assert reviewer.get("/review/escalations").status_code == 403
    assert reviewer.get("/api/v1/review/escalations").status_code == 403
    assert admin.get("/review/").status_code == 200
    assert admin.get("/api/v1/queue").status_code == 200


def test_users_cli_reads_the_password_from_stdin(app):
    runner = app.test_cli_runner()
    with app.app_context():
        result = runner.invoke(
            args=["users", "create", "carol", "--role", "admin"], input="a long password\n"
        )
        assert result.exit_code == 0, result.output
        short = runner.invoke(args=["users", "create", "dave"], input="short\n")
        assert short.exit_code != 0 and "at least 8" in short.output
    client = app.test_client()
    assert login(client, "carol", "a long password").status_code == 302
    assert client.get("/review/escalations").status_code == 200


@pytest.mark.parametrize("name", ["x" * 81, "  "])
def test_users_cli_refuses_names_the_database_cannot_hold(app, name):
    runner = app.test_cli_runner()
    with app.app_context():
        result = runner.invoke(args=["users", "create", name], input="a long password\n")
        assert result.exit_code != 0 and "1 to 80 characters" in result.output
        assert db.session.scalar(select(func.count(User.id))) == 0
