"""Blind review holds on every read a reviewer has: with two reviews per item, a reviewer sees
neither the choice nor the note of another reviewer's pending vote, whether through the review
screen's item, the decision list (by image or by reviewer), the image record or a report. Admins
see it all, and so does everyone once the item is settled."""

from __future__ import annotations

import csv

import pytest

from tests.factories import make_scored_image, make_version
from tests.helpers import make_user
from webapp.extensions import db
from webapp.jobs import wait_for
from webapp.services.people import tokens
from webapp.services.review import materialise

SECRET_NOTE = "the hands have six fingers"


@pytest.fixture
def pending(app):
    """ann (reviewer) voted FAKE with a note on an image that needs two reviews."""
    app.config["REVIEWS_PER_ITEM"] = 2
    with app.app_context():
        version = make_version("v1")
        image = make_scored_image(version, 0.9, label="real")
        materialise.rebuild()
        secrets = {
            name: tokens.create_token(make_user(name, role=role), f"{name}'s script")[1]
            for name, role in (("ann", "reviewer"), ("bob", "reviewer"), ("adam", "admin"))
        }
        image_id = image.id
    client = app.test_client()
    decide(client, secrets["ann"], image_id, "fake", SECRET_NOTE)
    return {"image_id": image_id, "secrets": secrets, "client": client}


def headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def decide(client, secret: str, image_id: int, choice: str, note: str = "") -> None:
    claimed = client.post(
        "/api/v1/review/claim", json={"image_id": image_id}, headers=headers(secret)
    )
    assert claimed.status_code == 200
    body = {"image_id": image_id, "choice": choice, "note": note}
    response = client.post("/api/v1/review/decisions", json=body, headers=headers(secret))
    assert response.status_code == 201, response.get_json()


def decisions_seen(pending, who: str) -> dict[str, list[tuple[str, str]]]:
    """Every reviewer-facing read of ann's vote, as (choice, note) pairs, for ``who``."""
    client, image_id = pending["client"], pending["image_id"]

    def read(url: str):
        response = client.get(url, headers=headers(pending["secrets"][who]))
        assert response.status_code == 200, url
        return response.get_json()

    by_image = read(f"/api/v1/decisions?image_id={image_id}")["items"]
    by_reviewer = read("/api/v1/decisions?reviewer=ann")["items"]
    image = read(f"/api/v1/images/{image_id}")["decisions"]
    item = read(f"/api/v1/review/items/{image_id}")["history"]
    ann_only = [entry for entry in item if entry["user"] == "ann"]
    return {
        "decisions?image_id": [(d["choice"], d["note"]) for d in by_image],
        "decisions?reviewer": [(d["choice"], d["note"]) for d in by_reviewer],
        "images/<id>": [(d["choice"], d["note"]) for d in image],
        "review/items/<id>": [(d["choice"], d["note"]) for d in ann_only],
    }


def test_another_reviewer_cannot_read_a_pending_vote_anywhere(pending):
    seen = decisions_seen(pending, "bob")
    assert seen == dict.fromkeys(seen, [("hidden", "")])


def test_the_voter_and_admins_see_it(pending):
    for who in ("ann", "adam"):
        seen = decisions_seen(pending, who)
        assert seen == dict.fromkeys(seen, [("fake", SECRET_NOTE)]), who


def test_once_settled_everyone_sees_it(pending):
    decide(pending["client"], pending["secrets"]["bob"], pending["image_id"], "fake")
    seen = decisions_seen(pending, "bob")
    assert all(("fake", SECRET_NOTE) in pairs for pairs in seen.values()), seen


def test_a_reviewers_report_leaves_out_pending_votes_of_others(app, pending, worker):
    client = pending["client"]

    def report_for(who: str) -> list[dict]:
        started = client.post(
            "/api/v1/reports", json={"format": "csv"}, headers=headers(pending["secrets"][who])
        )
        assert started.status_code == 202
        with app.app_context():
            assert wait_for(started.get_json()["id"], timeout=60, poll=0.05).state == "succeeded"
            db.session.remove()
        download = client.get(
            f"/api/v1/reports/{started.get_json()['id']}/download",
            headers=headers(pending["secrets"][who]),
        )
        text = download.get_data(as_text=True)
        download.close()  # the file behind the response
        return list(csv.DictReader(text.splitlines()))

    (bobs_row,) = report_for("bob")
    assert "fake" not in bobs_row["decisions"] and SECRET_NOTE not in bobs_row["decisions"]
    (admins_row,) = report_for("adam")
    assert SECRET_NOTE in admins_row["decisions"]


def test_agreement_figures_do_not_give_away_a_pending_vote(app, pending):
    """With three reviews per item, bob's vote after ann's leaves the item pending: his
    agreement figures must not tell him how ann voted (his history view hides it too)."""
    app.config["REVIEWS_PER_ITEM"] = 3
    decide(pending["client"], pending["secrets"]["bob"], pending["image_id"], "real")
    client, bob = pending["client"], headers(pending["secrets"]["bob"])
    assert client.get("/api/v1/review/stats", headers=bob).get_json()["agreement"] == {
        "compared": 0,
        "agreed": 0,
        "rate": None,
    }
    history = client.get(f"/api/v1/review/items/{pending['image_id']}", headers=bob).get_json()
    assert [e["choice"] for e in history["history"] if e["user"] == "ann"] == ["hidden"]
