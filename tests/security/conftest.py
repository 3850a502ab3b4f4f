"""Fixtures for the security tests: a desk with something to attack, users who are logged in
through the real form, and a snapshot of everything a request could change."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.factories import make_scored_image, make_version
from tests.helpers import csrf_token, login, make_user
from webapp.extensions import db
from webapp.jobs import submit
from webapp.jobs.queue import huey
from webapp.models import Check, ReviewDecision
from webapp.services.people import tokens
from webapp.services.review import leases, materialise


@pytest.fixture(autouse=True)
def _push_request_context():
    """No shared request context: several clients here are several different users."""
    yield


@dataclass
class Desk:
    """Ids of the rows the attacks aim at."""

    image_ids: list[int]
    spare_version: str  # inactive, so activating it changes something
    other_version: str
    job_id: int  # queued, so cancelling it changes something
    token_id: int
    reviewer_secret: str
    admin_secret: str
    dataset_id: int = 0
    check_id: int = 0  # a check of images[2], not yet sent to review


@pytest.fixture
def desk(app) -> Desk:
    """Users rita (reviewer) and adam (admin); three scored images, one decided by rita and two
    leased to her (a decision needs the lease); two inactive versions; a queued job; API tokens
    for both users."""
    with app.app_context():
        v1 = make_version("v1")
        make_version("v2", active=False)
        make_version("v3", active=False)
        rita = make_user("rita", role="reviewer")
        adam = make_user("adam", role="admin")
        images = [make_scored_image(v1, p, label="real") for p in (0.5, 0.55, 0.6)]
        materialise.rebuild()
        db.session.add(
            ReviewDecision(
                image_id=images[0].id, user_id=rita.id, choice="fake", label_before="real"
            )
        )
        db.session.commit()
        leases.claim_image(rita.id, images[1].id)
        leases.claim_image(rita.id, images[2].id)
        job = submit("report", {"report": "labels", "format": "csv"}, user_id=adam.id)
        token, reviewer_secret = tokens.create_token(rita, "rita's script")
        _, admin_secret = tokens.create_token(adam, "adam's script")
        check = Check(image_id=images[2].id, user_id=rita.id, file_name="c.jpg")
        db.session.add(check)
        db.session.commit()
        return Desk(
            image_ids=[image.id for image in images],
            spare_version="v2",
            other_version="v3",
            job_id=job.id,
            token_id=token.id,
            reviewer_secret=reviewer_secret,
            admin_secret=admin_secret,
            dataset_id=images[0].dataset_id,
            check_id=check.id,
        )


@pytest.fixture
def session_for(app):
    """``session_for("rita")``: a client logged in through the form, and its CSRF token."""

    def make(username: str | None):
        client = app.test_client()
        if username is not None:
            assert login(client, username).status_code == 302
        return client, csrf_token(client, "/auth/login")

    return make


def snapshot(app) -> dict:
    """Every row of every table, the task queue's length, and the files of the instance folder
    (the databases themselves aside): what a refused request must leave as it was."""
    with app.app_context():
        tables = {
            table.name: sorted(
                (tuple(map(repr, row)) for row in db.session.execute(select(table))),
            )
            for table in db.metadata.sorted_tables
        }
        db.session.remove()
    root = Path(app.instance_path)
    files = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith(("realfake.db", "huey.db"))
    )
    return {"tables": tables, "pending tasks": huey.pending_count(), "files": files}


def changed(before: dict, after: dict) -> list[str]:
    """What differs between two snapshots, by table / part."""
    differences = [
        name for name in before["tables"] if before["tables"][name] != after["tables"][name]
    ]
    differences += [part for part in ("pending tasks", "files") if before[part] != after[part]]
    return differences
