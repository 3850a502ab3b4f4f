"""Accounts (create, disable, reset, role; the last admin stays) and the audit trail (merged
decisions and events, filters, CSV), tested on the services without HTTP."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from tests.factories import make_dataset, make_decision, make_seeded_image, make_version
from tests.helpers import make_user
from webapp.extensions import db
from webapp.models import utcnow
from webapp.services.people import accounts
from webapp.services.records import audit_trail
from webapp.services.records.audit_trail import TrailFilter


def test_create_and_change_an_account_records_each_change(app_ctx):
    root = make_user("root", role="admin")
    ann = accounts.create_user(" ann ", "long enough", "reviewer", root)
    assert ann.username == "ann" and ann.check_password("long enough")
    accounts.reset_password(ann, "another secret", root)
    assert ann.check_password("another secret")
    accounts.set_role(ann, "admin", root)
    accounts.set_enabled(ann, False, root)
    assert not ann.is_active
    actions = [entry["action"] for entry in audit_trail.trail(TrailFilter(user="root"))]
    assert actions == ["user-disabled", "role-changed", "password-reset", "user-created"]


@pytest.mark.parametrize(
    ("username", "password", "role", "message"),
    [
        ("", "long enough", "reviewer", "1 to 80 characters"),
        ("root", "long enough", "reviewer", "taken"),
        ("bob", "short", "reviewer", "at least 8"),
        ("bob", "long enough", "owner", "unknown role"),
    ],
)
def test_bad_accounts_are_refused_with_a_reason(app_ctx, username, password, role, message):
    make_user("root", role="admin")
    with pytest.raises(accounts.AccountError, match=message):
        accounts.create_user(username, password, role, None)


def test_the_last_admin_cannot_be_disabled_or_demoted(app_ctx):
    root = make_user("root", role="admin")
    with pytest.raises(accounts.AccountError, match="last admin"):
        accounts.set_enabled(root, False, root)
    with pytest.raises(accounts.AccountError, match="last admin"):
        accounts.set_role(root, "reviewer", root)
    other = make_user("other", role="admin")
    accounts.set_role(root, "reviewer", other)
    assert root.role == "reviewer"
    with pytest.raises(accounts.AccountError, match="last admin"):
        accounts.set_enabled(other, False, other)


@pytest.fixture
def trail_data(app_ctx):
    dataset = make_dataset("d")
    version = make_version("v1", active=True)
    first, second = make_seeded_image(dataset, seed=1), make_seeded_image(dataset, seed=2)
    decision = make_decision(first, "ann", "fake", version, note="render")
    make_decision(first, "ann", "undo", version, reverts=decision)
    make_decision(second, "bob", "real", version)
    root = make_user("root", role="admin")
    audit_trail.record("activation", "v1", "v1 activated", user=root)
    db.session.commit()
    return first, second


def test_trail_merges_decisions_undos_and_events(trail_data):
    entries = audit_trail.trail()
    assert sorted(e["action"] for e in entries) == ["activation", "decision", "decision", "undo"]
    first, _ = trail_data
    mine = audit_trail.trail(TrailFilter(image=first.sha256[:12]))
    assert [e["action"] for e in mine] == ["undo", "decision"]
    assert "called it fake" in mine[1]["summary"] and "render" in mine[1]["summary"]
    assert [e["user"] for e in audit_trail.trail(TrailFilter(action="decision"))] == ["bob", "ann"]
    assert audit_trail.trail(TrailFilter(user="root"))[0]["target"] == "v1"


def test_trail_filters_by_date(trail_data):
    today = utcnow().date()
    assert len(audit_trail.trail(TrailFilter(since=today, until=today))) == 4
    assert audit_trail.trail(TrailFilter(until=today - timedelta(days=1))) == []
    assert audit_trail.trail(TrailFilter(since=today + timedelta(days=1))) == []


def test_trail_csv_has_one_row_per_entry(trail_data):
    rows = list(csv.DictReader(io.StringIO(audit_trail.trail_csv(TrailFilter(user="ann")))))
    assert [row["action"] for row in rows] == ["undo", "decision"]
    assert set(rows[0]) == set(audit_trail.CSV_FIELDS)


def test_unknown_actions_are_refused(app_ctx):
    with pytest.raises(ValueError, match="unknown audit action"):
        audit_trail.record("coffee-break")
