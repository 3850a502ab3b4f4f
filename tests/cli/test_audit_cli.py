"""Account, token and activation changes made from the command line (and activations the desk
makes by itself) are in the audit trail as the web pages write them, with ``cli`` as the actor,
and the Audit page filters them."""

from __future__ import annotations

from sqlalchemy import select

from tests.factories import make_dataset, make_prediction, make_version
from tests.factories import make_seeded_image as make_image
from tests.helpers import make_user
from webapp.extensions import db
from webapp.models import ApiToken, AuditEvent, Job, User
from webapp.services.records import audit_trail, versions
from webapp.services.records.audit_trail import TrailFilter


def _cli_entries(action: str) -> list[dict]:
    return audit_trail.trail(TrailFilter(user="cli", action=action))


def test_users_create_and_update_from_the_cli_are_audited(app, runner):
    created = runner.invoke(args=["users", "create", "carol"], input="a long password\n")
    assert created.exit_code == 0, created.output
    updated = runner.invoke(
        args=["users", "create", "carol", "--role", "admin", "--update"], input="another one\n"
    )
    assert updated.exit_code == 0 and "updated admin carol" in updated.output
    with app.app_context():
        (made,) = _cli_entries("user-created")
        assert (made["target"], made["summary"]) == ("carol", "created as reviewer")
        (role,) = _cli_entries("role-changed")
        assert role["summary"] == "reviewer to admin"
        assert [e["target"] for e in _cli_entries("password-reset")] == ["carol"]
        assert db.session.scalar(select(User)).check_password("another one")


def test_a_refused_cli_update_changes_nothing_and_records_nothing(app, runner):
    with app.app_context():
        make_user("root", role="admin")
    result = runner.invoke(
        args=["users", "create", "root", "--role", "reviewer", "--update"], input="new secret 1\n"
    )
    assert result.exit_code == 1 and "last admin" in result.output
    with app.app_context():
        root = db.session.scalar(select(User))
        assert root.role == "admin" and not root.check_password("new secret 1")
        assert audit_trail.trail(TrailFilter(user="cli")) == []


def test_cli_tokens_are_audited_without_their_secret(app, runner):
    with app.app_context():
        make_user("adam", role="admin")
    made = runner.invoke(args=["users", "token", "adam", "--label", "cron"])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    with app.app_context():
        token_id = db.session.scalar(select(ApiToken.id))
    assert runner.invoke(args=["users", "revoke-token", str(token_id)]).exit_code == 0
    with app.app_context():
        (created,) = _cli_entries("token-created")
        assert (created["target"], created["summary"]) == ("cron", "acts as adam")
        assert [e["target"] for e in _cli_entries("token-revoked")] == ["cron"]
        for event in db.session.scalars(select(AuditEvent)):
            assert secret not in f"{event.target} {event.summary} {event.details}"


def test_web_tokens_are_audited_by_the_admin_who_made_them(app, client, auth):
    auth.login("admin", username="root")
    with app.app_context():
        rita = make_user("rita")
        rita_id = rita.id
    from tests.helpers import csrf_token

    token = csrf_token(client, "/admin/tokens")
    page = client.post(
        "/admin/tokens", data={"csrf_token": token, "user_id": rita_id, "name": "laptop"}
    )
    assert page.status_code == 200 and b"copy it now" in page.data
    with app.app_context():
        (created,) = audit_trail.trail(TrailFilter(user="root", action="token-created"))
        assert (created["target"], created["summary"]) == ("laptop", "acts as rita")


def test_cli_activation_is_audited_with_how_verdicts_move(app, runner):
    with app.app_context():
        dataset = make_dataset("d")
        old, new = make_version("v1", active=True), make_version("v2", active=False)
        for seed, (p_old, p_new) in enumerate([(0.1, 0.9), (0.2, 0.8), (0.9, 0.95)]):
            image = make_image(dataset, seed=seed)
            make_prediction(image, old, p_old, ood_score=None, audit_key=0.0)
            make_prediction(image, new, p_new, ood_score=None, audit_key=0.0)
    result = runner.invoke(args=["model", "activate", "v2"])
    assert result.exit_code == 0 and "v2 is active" in result.output
    assert "scoring" not in result.output  # v2 has scored already
    with app.app_context():
        (entry,) = _cli_entries("activation")
        assert entry["target"] == "v2"
        assert entry["summary"] == (
            "v2 activated instead of v1: 2 verdicts real to fake, 0 fake to real"
        )
        assert versions.active_version().name == "v2"


def test_cli_activation_of_an_unscored_version_queues_its_scoring(app, runner):
    with app.app_context():
        make_version("v1", active=True)
        make_version("v2", active=False)
    result = runner.invoke(args=["model", "activate", "v2"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.kind == "predict"))
        assert f"scoring is job {job.id}" in result.output
        assert job.params["version"] == "v2"
        assert len(_cli_entries("activation")) == 1


def test_automatic_activation_is_audited(app_ctx):
    first = make_version("v1", active=False)
    assert versions.activate_if_due(first, auto_activate_better=False)
    second = make_version("v2", active=False)
    assert not versions.activate_if_due(second, auto_activate_better=False)
    (entry,) = audit_trail.trail(TrailFilter(action="activation"))
    assert (entry["user"], entry["target"]) == ("auto-activation", "v1")
    assert entry["summary"] == "v1 activated instead of none: the first version"


def test_the_audit_page_filters_cli_activations(app, runner, client, auth):
    with app.app_context():
        make_version("v1", active=True)
        make_version("v2", active=False)
    assert runner.invoke(args=["model", "activate", "v2"]).exit_code == 0
    auth.login("admin", username="root")
    assert runner.invoke(args=["users", "token", "root", "--label", "nightly"]).exit_code == 0
    page = client.get("/admin/audit?user=cli&action=activation").get_data(as_text=True)
    assert "v2 activated instead of v1" in page
    assert "nightly" not in page
    assert "<option selected>cli</option>" in page
    everything = client.get("/admin/audit?user=cli").get_data(as_text=True)
    assert "nightly" in everything and "acts as root" in everything
