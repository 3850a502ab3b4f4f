"""Decisions, undo, consensus and escalation, effective labels, reviewer statistics, history."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from tests.factories import decide, make_scored_image, make_version
from tests.helpers import make_user
from webapp.extensions import db
from webapp.models import ReviewDecision
from webapp.services.records import labels
from webapp.services.records.labels import Vote, consensus
from webapp.services.review import decisions, history, item_details, leases, queue, statistics


def vote(decision_id, user_id, choice, admin=False):
    return Vote(decision_id, 1, user_id, choice, admin)


@pytest.mark.parametrize(
    "votes, required, status, label",
    [
        ([], 1, "unreviewed", None),
        ([vote(1, 1, "fake")], 1, "agreed", "fake"),
        ([vote(1, 1, "unsure")], 1, "agreed", "unsure"),
        ([vote(1, 1, "fake")], 2, "pending", None),
        ([vote(1, 1, "fake"), vote(2, 2, "fake")], 2, "agreed", "fake"),
        ([vote(1, 1, "fake"), vote(2, 2, "real")], 2, "escalated", None),
        # With one review per item, a second reviewer who disagrees still escalates.
        ([vote(1, 1, "fake"), vote(2, 2, "real")], 1, "escalated", None),
        # A reviewer's latest vote replaces their earlier one.
        ([vote(1, 1, "fake"), vote(3, 1, "real"), vote(2, 2, "real")], 2, "agreed", "real"),
        # An admin's vote is final.
        ([vote(1, 1, "fake"), vote(2, 2, "real"), vote(3, 3, "real", True)], 2, "resolved", "real"),
        ([vote(1, 3, "fake", True)], 3, "agreed", "fake"),
    ],
)
def test_consensus_rule(votes, required, status, label):
    state = consensus(votes, required)
    assert (state.status, state.label) == (status, label)
    assert state.settled == (status in {"agreed", "escalated", "resolved"})


@pytest.fixture
def version(app_ctx):
    return make_version("v1")


@pytest.fixture
def people(app_ctx):
    return make_user("ann"), make_user("bob"), make_user("boss", role="admin")


def decisions_of(user):
    return db.session.scalars(
        select(ReviewDecision).where(ReviewDecision.user_id == user.id).order_by(ReviewDecision.id)
    ).all()


def test_decision_rows_record_who_what_and_against_which_version(version, people):
    ann = people[0]
    image = make_scored_image(version, 0.9, label="real")
    outcome = decide(ann, image.id, "fake", note="  visible seam  ")
    row = decisions_of(ann)[0]
    assert (row.image_id, row.choice, row.note) == (image.id, "fake", "visible seam")
    assert (row.label_before, row.model_version_id) == ("real", version.id)
    assert outcome.label == "fake" and outcome.state.status == "agreed"
    assert labels.effective_labels([image.id])[image.id] == "fake"


@pytest.mark.parametrize(
    "choice, message",
    [("maybe", "choice must be"), ("", "choice must be")],
)
def test_bad_choices_are_refused(version, people, choice, message):
    image = make_scored_image(version, 0.5)
    with pytest.raises(decisions.ReviewError, match=message):
        decisions.decide(people[0], image.id, choice)
    assert decisions_of(people[0]) == []


def test_overlong_note_and_unknown_image_are_refused(version, people):
    image = make_scored_image(version, 0.5)
    with pytest.raises(decisions.ReviewError, match="at most"):
        decisions.decide(people[0], image.id, "real", note="x" * (decisions.MAX_NOTE + 1))
    with pytest.raises(decisions.NotFound):
        decisions.decide(people[0], 999_999, "real")


def test_undo_is_a_new_row_and_restores_the_label(version, people):
    ann = people[0]
    first = make_scored_image(version, 0.9, label="real")
    second = make_scored_image(version, 0.1, label="fake")
    decide(ann, first.id, "fake")
    decide(ann, second.id, "unsure")
    assert labels.effective_labels([first.id, second.id]) == {first.id: "fake", second.id: "unsure"}

    undone = decisions.undo_last(ann)
    assert undone.reverted["image_id"] == second.id
    assert labels.effective_labels([second.id])[second.id] == "fake"  # back to the import label
    again = decisions.undo_last(ann)
    assert again.reverted["image_id"] == first.id
    assert labels.effective_labels([first.id])[first.id] == "real"
    with pytest.raises(decisions.NothingToUndo):
        decisions.undo_last(ann)

    rows = decisions_of(ann)
    assert [row.choice for row in rows] == ["fake", "unsure", "undo", "undo"]
    assert [row.reverts_id for row in rows[2:]] == [rows[1].id, rows[0].id]
    # Both images are back in the queue.
    open_ids = {item.image_id for item in queue.list_items(limit=10)}
    assert {first.id, second.id} <= open_ids


def test_undoing_a_skip_brings_the_item_back_to_the_skipper(version, people):
    ann = people[0]
    image = make_scored_image(version, 0.5, label="unknown")
    decide(ann, image.id, "skip")
    decide(ann, image.id, "skip")  # skipped twice: left to the others
    assert leases.claim_next(ann.id) is None
    assert leases.left_for(ann.id) == {"leased_to_others": 0, "skipped": 1}
    assert leases.claim_next(ann.id, skipped_again=True).image_id == image.id  # asked for
    leases.release(ann.id)
    decisions.undo_last(ann)
    assert leases.claim_next(ann.id).image_id == image.id


def test_a_skipped_item_comes_back_to_the_skipper_after_the_rest(version, people):
    ann, bob, _ = people
    first, second, third = (
        make_scored_image(version, 0.5 + i / 100, label="unknown") for i in range(3)
    )
    decide(ann, first.id, "skip")
    leases.release(ann.id)
    served = []
    while (claim := leases.claim_next(ann.id)) is not None:
        served.append(claim.image_id)
        decisions.decide(ann, claim.image_id, "real" if claim.image_id != first.id else "fake")
    assert served == [second.id, third.id, first.id]
    assert leases.claim_next(bob.id) is None  # all decided now


def test_the_end_counts_items_other_reviewers_hold(version, people):
    ann, bob, _ = people
    image = make_scored_image(version, 0.5, label="unknown")
    assert leases.claim_next(bob.id).image_id == image.id
    assert leases.claim_next(ann.id) is None
    assert leases.left_for(ann.id) == {"leased_to_others": 1, "skipped": 0}


def test_one_review_per_item_by_default(version, people):
    ann, bob, _ = people
    image = make_scored_image(version, 0.5, label="unknown")
    decide(ann, image.id, "real")
    assert leases.claim_next(bob.id) is None


def test_two_reviews_agreement_sets_the_label(app, version, people):
    app.config["REVIEWS_PER_ITEM"] = 2
    ann, bob, _ = people
    image = make_scored_image(version, 0.5, label="unknown")
    decide(ann, image.id, "fake")
    assert labels.effective_labels([image.id])[image.id] == "unknown"  # pending: one vote of two
    assert leases.claim_next(ann.id) is None  # Ann has voted
    assert leases.claim_next(bob.id).image_id == image.id
    outcome = decide(bob, image.id, "fake")
    assert (outcome.state.status, outcome.label) == ("agreed", "fake")
    assert queue.list_items() == []
    assert item_details.escalations() == []


def test_two_reviews_disagreement_escalates_until_an_admin_decides(app, version, people):
    app.config["REVIEWS_PER_ITEM"] = 2
    ann, bob, boss = people
    image = make_scored_image(version, 0.9, label="real")
    decide(ann, image.id, "fake", note="hands")
    outcome = decide(bob, image.id, "real", note="looks fine")
    assert outcome.state.status == "escalated"
    # no consensus: the import label stands
    assert labels.effective_labels([image.id])[image.id] == "real"
    assert queue.list_items() == []  # out of the queue...
    (escalated,) = item_details.escalations()  # ...and on the admins' list
    assert escalated["image_id"] == image.id
    assert [(v["user"], v["choice"], v["note"]) for v in escalated["votes"]] == [
        ("ann", "fake", "hands"),
        ("bob", "real", "looks fine"),
    ]
    assert "Reviewers disagree (FAKE, REAL)" in item_details.item_details(image.id, boss)["reason"]
    resolved = decide(boss, image.id, "fake")
    assert (resolved.state.status, resolved.label) == ("resolved", "fake")
    assert item_details.escalations() == []


def test_undo_reopens_a_consensus(app, version, people):
    app.config["REVIEWS_PER_ITEM"] = 2
    ann, bob, _ = people
    image = make_scored_image(version, 0.5, label="unknown")
    decide(ann, image.id, "fake")
    decide(bob, image.id, "fake")
    decisions.undo_last(bob)
    assert labels.review_state(image.id).status == "pending"
    assert [item.image_id for item in queue.list_items()] == [image.id]
    assert leases.claim_next(bob.id).image_id == image.id


def test_effective_labels_for_all_images(version, people):
    ann = people[0]
    kept = make_scored_image(version, 0.1, label="real")
    flipped = make_scored_image(version, 0.9, label="real")
    unsure = make_scored_image(version, 0.5, label="fake")
    unlabelled = make_scored_image(version, 0.5, label="unknown")
    decide(ann, flipped.id, "fake")
    decide(ann, unsure.id, "unsure")
    decide(ann, unlabelled.id, "skip")
    assert labels.effective_labels() == {
        kept.id: "real",
        flipped.id: "fake",
        unsure.id: "unsure",
        unlabelled.id: "unknown",
    }
    assert labels.effective_labels([flipped.id, 424242]) == {flipped.id: "fake"}


def test_reviewer_counts_and_agreement(version, people):
    ann, bob, _ = people
    images = [make_scored_image(version, 0.5, label="unknown") for _ in range(4)]
    for image, choice in zip(images, ["real", "fake", "unsure", "skip"], strict=True):
        decide(ann, image.id, choice)
    decide(bob, images[0].id, "real")  # agrees
    decide(bob, images[1].id, "real")  # disagrees
    decisions.undo_last(ann)  # the skip
    decisions.undo_last(ann)  # the unsure
    stats = statistics.reviewer_stats(ann.id)
    assert (stats["today"], stats["all_time"], stats["skipped"]) == (2, 2, 0)
    assert stats["agreement"] == {"compared": 2, "agreed": 1, "rate": 0.5}
    assert statistics.reviewer_stats(bob.id)["agreement"]["rate"] == 0.5
    assert db.session.scalar(select(func.count(ReviewDecision.id))) == 8


def test_history_hides_other_votes_while_a_consensus_is_pending(app, version, people):
    app.config["REVIEWS_PER_ITEM"] = 2
    ann, bob, boss = people
    image = make_scored_image(version, 0.5, label="unknown")
    decide(ann, image.id, "fake", note="smeared text")
    seen_by_bob = history.history(image.id, bob)
    assert [(e["user"], e["choice"], e["note"]) for e in seen_by_bob] == [("ann", "hidden", "")]
    assert history.history(image.id, ann)[0]["choice"] == "fake"
    assert history.history(image.id, boss)[0]["note"] == "smeared text"
    decide(bob, image.id, "fake")
    assert [e["choice"] for e in history.history(image.id, bob)] == ["fake", "fake"]


def test_item_details_explain_the_item(version, people):
    image = make_scored_image(version, 0.2, label="fake", label_issue_score=0.9, oos_p_fake=0.1)
    details = item_details.item_details(image.id, people[0])
    assert details["bucket"] == "label_issue"
    assert "Labelled FAKE" in details["reason"] and "0.10" in details["reason"]
    assert details["prediction"]["verdict"] == "real"
    assert details["prediction"]["confidence"] == pytest.approx(0.8)
    assert details["file"]["format"] == "JPEG" and details["file"]["jpeg_quality"] == 90
    assert (details["import_label"], details["label_source"]) == ("fake", "folder name")
    decide(people[0], image.id, "real")
    after = item_details.item_details(image.id, people[0])
    assert after["bucket"] is None and after["label"] == "real"
    assert after["history"][0]["choice"] == "real"


# ----------------------------------------------------------------------------- once per claim


def test_a_decision_needs_the_lease(version, people):
    ann = people[0]
    image = make_scored_image(version, 0.5, label="unknown")
    with pytest.raises(decisions.Conflict, match="no lease"):
        decisions.decide(ann, image.id, "real")
    assert decisions_of(ann) == []


def test_the_same_decision_twice_is_stored_once(version, people):
    ann = people[0]
    image = make_scored_image(version, 0.5, label="unknown")
    first = decide(ann, image.id, "fake", idempotency_key="key-00000001")
    again = decisions.decide(ann, image.id, "fake", idempotency_key="key-00000001")
    assert again.replayed and not first.replayed
    assert again.decision["id"] == first.decision["id"]
    with pytest.raises(decisions.Conflict, match="already decided"):  # without the key: refused
        decisions.decide(ann, image.id, "fake")
    assert [row.choice for row in decisions_of(ann)] == ["fake"]


def test_a_decided_item_is_refused_until_undone(version, people):
    ann = people[0]
    image = make_scored_image(version, 0.5, label="unknown")
    decide(ann, image.id, "real")
    with pytest.raises(decisions.Conflict, match="already decided"):
        decide(ann, image.id, "fake")  # leased again (opened by its link): still refused
    decisions.undo_last(ann)
    assert decide(ann, image.id, "fake").label == "fake"


def test_a_key_names_one_decision(version, people):
    ann = people[0]
    one, two = (make_scored_image(version, 0.5, label="unknown") for _ in range(2))
    decide(ann, one.id, "real", idempotency_key="key-00000002")
    with pytest.raises(decisions.Conflict, match="already used"):
        decide(ann, two.id, "real", idempotency_key="key-00000002")
    with pytest.raises(decisions.ReviewError, match="idempotency_key must be"):
        decide(ann, two.id, "real", idempotency_key="short")


def test_concurrent_identical_decisions_store_one_row_and_undo_reverts_it(app, version, people):
    ann = people[0]
    image = make_scored_image(version, 0.5, label="unknown")
    leases.claim_image(ann.id, image.id)
    viewer, image_id = decisions.Viewer.of(ann), image.id
    results, errors = [], []
    start = threading.Barrier(8)

    def send() -> None:
        with app.app_context():
            start.wait()
            try:
                outcome = decisions.decide(viewer, image_id, "real", idempotency_key="same-click-1")
                results.append(outcome.decision["id"])
            except BaseException as error:  # reported below
                errors.append(error)
            db.session.remove()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 8 and len(set(results)) == 1
    assert [row.choice for row in decisions_of(ann)] == ["real"]
    decisions.undo_last(viewer)
    assert labels.review_state(image_id).status == "unreviewed"
    assert image_id in {item.image_id for item in queue.list_items(limit=10)}


def test_the_api_answers_a_repeat_with_the_first_decision(auth, client, app):
    from tests.helpers import csrf_token

    def api_post_json(client, path, body):
        return client.post(path, json=body, headers={"X-CSRFToken": csrf_token(client, "/review/")})

    with app.app_context():
        version = make_version("v1")
        image_id = make_scored_image(version, 0.5, label="unknown").id
    auth.login()
    claimed = api_post_json(client, "/api/v1/review/claim", {})
    assert claimed.get_json()["item"]["image_id"] == image_id
    body = {"image_id": image_id, "choice": "real", "idempotency_key": "click-000001"}
    first = api_post_json(client, "/api/v1/review/decisions", body)
    again = api_post_json(client, "/api/v1/review/decisions", body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["decision"]["id"] == first.get_json()["decision"]["id"]
    assert again.get_json()["replayed"] is True
    unleased = api_post_json(client, "/api/v1/review/decisions", body | {"idempotency_key": None})
    assert unleased.status_code == 409
    assert "already decided" in unleased.get_json()["message"]
