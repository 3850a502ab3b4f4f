"""A user cannot flood the queue: at most MAX_QUEUED_JOBS jobs of a kind waiting or running, and
asking again for the very job already queued returns it instead of queueing a copy."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.helpers import make_user
from webapp.extensions import db
from webapp.jobs import cancel, submit
from webapp.models import Job
from webapp.services.people.tokens import create_token

REPORTS = [
    {"report": "labels", "format": "csv"},
    {"report": "labels", "format": "imagefolder"},
    {"report": "labels", "format": "csv", "split": "train"},
    {"report": "labels", "format": "csv", "split": "val"},
]


@pytest.fixture
def rita(app):
    with app.app_context():
        return create_token(make_user("rita"), "rita's script")[1]


def start(app, secret: str, body: dict):
    return app.test_client().post(
        "/api/v1/reports", json=body, headers={"Authorization": f"Bearer {secret}"}
    )


def job_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Job.id)))


def test_a_reviewer_may_queue_three_reports_and_no_more(app, rita):
    assert [start(app, rita, body).status_code for body in REPORTS[:3]] == [202, 202, 202]
    refused = start(app, rita, REPORTS[3])
    assert refused.status_code == 429
    assert "3 report jobs waiting or running" in refused.get_json()["message"]
    assert job_count(app) == 3


def test_the_same_request_again_returns_the_queued_job(app, rita):
    first = start(app, rita, REPORTS[0]).get_json()
    again = [start(app, rita, REPORTS[0]) for _ in range(5)]
    assert {response.status_code for response in again} == {202}
    assert {response.get_json()["id"] for response in again} == {first["id"]}
    assert job_count(app) == 1


def test_a_finished_or_cancelled_job_frees_its_place(app, rita):
    ids = [start(app, rita, body).get_json()["id"] for body in REPORTS[:3]]
    with app.app_context():
        cancel(db.session.get(Job, ids[0]))
    assert start(app, rita, REPORTS[3]).status_code == 202


def test_the_limit_is_per_user_and_the_command_line_has_none(app, rita):
    for body in REPORTS[:3]:
        start(app, rita, body)
    with app.app_context():
        sam = create_token(make_user("sam"), "sam's script")[1]
        for split in ("train", "val", "test", None):
            submit("report", {"report": "labels", "format": "csv", "split": split})
    assert start(app, sam, REPORTS[3]).status_code == 202
