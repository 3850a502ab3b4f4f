"""The review queue as a service: bucket membership and order, filters, counts, rebuilds, leases."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tests.factories import decide, make_dataset, make_prediction, make_scored_image, make_version
from tests.helpers import make_user
from webapp.extensions import db
from webapp.models import Lease, QueueBuild, ReviewDecision, utcnow
from webapp.services.review import buckets, decisions, leases, materialise, queue
from webapp.services.review.buckets import QueueError, QueueFilter


@pytest.fixture
def version(app_ctx):
    return make_version("v1")


@pytest.fixture
def zoo(version):
    """One or more images per bucket, named by what they should show."""
    v = version
    images = {
        # label_issue outranks misclassified: li_high is both.
        "li_high": make_scored_image(v, 0.9, label="real", label_issue_score=0.95),
        "li_low": make_scored_image(v, 0.2, label="fake", label_issue_score=0.85),
        "mis_confident": make_scored_image(v, 0.05, label="fake", label_issue_score=0.5),
        "mis_less": make_scored_image(v, 0.7, label="real"),
        "unc_close": make_scored_image(v, 0.49, label="unknown"),
        "unc_tie_a": make_scored_image(v, 0.56, label="fake"),
        "unc_tie_b": make_scored_image(v, 0.56, label="unknown"),
        "unc_far": make_scored_image(v, 0.4, label="real"),
        "ood_high": make_scored_image(v, 0.9, label="unknown", ood_score=0.99),
        "ood_low": make_scored_image(v, 0.95, label="fake", ood_score=0.96),
        "audit_fake": make_scored_image(v, 0.98, label="unknown", audit_key=0.005),
        "audit_real": make_scored_image(v, 0.02, label="real", audit_key=0.01),
        # Not in the queue: confident and right, or unlabelled with label-only signals.
        "fine": make_scored_image(v, 0.03, label="real"),
        "unlabelled_issue": make_scored_image(v, 0.1, label="unknown", label_issue_score=0.99),
    }
    return {name: image.id for name, image in images.items()}


EXPECTED_ORDER = [
    "li_high",
    "li_low",
    "mis_confident",
    "mis_less",
    "unc_close",
    "unc_tie_a",
    "unc_tie_b",
    "unc_far",
    "ood_high",
    "ood_low",
    "audit_fake",
    "audit_real",
]


def names(zoo, image_ids):
    by_id = {image_id: name for name, image_id in zoo.items()}
    return [by_id[image_id] for image_id in image_ids]


def test_buckets_and_order(zoo):
    items = queue.list_items(limit=100)
    assert names(zoo, [item.image_id for item in items]) == EXPECTED_ORDER
    bucket_of = {names(zoo, [item.image_id])[0]: item.bucket for item in items}
    assert bucket_of["li_high"] == "label_issue"
    assert bucket_of["mis_less"] == "misclassified"
    assert bucket_of["unc_tie_b"] == "uncertain"
    assert bucket_of["ood_low"] == "ood"
    assert bucket_of["audit_real"] == "audit"
    assert queue.counts() == {
        "requested": 0,
        "label_issue": 2,
        "evidence": 0,  # no image here carries evidence
        "misclassified": 2,
        "uncertain": 4,
        "ood": 2,
        "audit": 2,
    }


def test_unlabelled_images_only_enter_through_the_last_three_buckets(zoo):
    unlabelled = [item for item in queue.list_items(limit=100) if item.label == "unknown"]
    assert {item.bucket for item in unlabelled} <= {"uncertain", "ood", "audit"}
    assert zoo["unlabelled_issue"] not in {item.image_id for item in unlabelled}


def test_items_carry_the_fields_scripts_read(zoo):
    first = queue.list_items(limit=1)[0].to_dict()
    assert first["image_id"] == zoo["li_high"]
    assert first["dataset"] == "set"
    assert (first["label"], first["verdict"], first["p_fake"]) == ("real", "fake", 0.9)
    assert first["label_issue_score"] == 0.95 and first["ood_score"] == 0.1
    assert "0.95" in first["reason"] and "REAL" in first["reason"]


def test_inactive_versions_do_not_feed_the_queue(zoo, version):
    other = make_version("v2", active=False)
    make_scored_image(other, 0.5, label="unknown")
    assert len(queue.list_items(limit=100)) == len(EXPECTED_ORDER)


def test_bucket_order_is_configurable(zoo, app):
    app.config["QUEUE_BUCKETS"] = ["audit", "ood", "uncertain", "misclassified", "label_issue"]
    order = names(zoo, [item.image_id for item in queue.list_items(limit=100)])
    assert order[:2] == ["audit_fake", "audit_real"]
    # Misclassified now comes first, so it takes the label issues that are also mistakes.
    assert order[-4:] == ["mis_confident", "li_high", "li_low", "mis_less"]
    assert queue.counts()["label_issue"] == 0


def test_bucket_can_be_switched_off(zoo, app):
    app.config["QUEUE_BUCKETS"] = ["label_issue", "misclassified", "uncertain", "ood"]
    assert "audit" not in queue.counts()
    listed = {item.image_id for item in queue.list_items(limit=100)}
    assert zoo["audit_fake"] not in listed


def test_thresholds_are_configurable(zoo, app):
    app.config["UNCERTAIN_LOW"], app.config["UNCERTAIN_HIGH"] = 0.45, 0.55
    uncertain = [item.image_id for item in queue.list_items(QueueFilter(bucket="uncertain"))]
    assert names(zoo, uncertain) == ["unc_close"]
    app.config["LABEL_ISSUE_THRESHOLD"] = 0.9
    label_issue = queue.list_items(QueueFilter(bucket="label_issue"))
    assert names(zoo, [item.image_id for item in label_issue]) == ["li_high"]


def test_bad_bucket_configuration_is_explained(zoo, app):
    app.config["QUEUE_BUCKETS"] = ["label_issue", "wild_guess"]
    with pytest.raises(QueueError, match="wild_guess"):
        queue.list_items()


def test_filters(version):
    other = make_dataset("other")
    in_other = make_scored_image(version, 0.5, dataset=other, split="val", label="unknown")
    in_test = make_scored_image(version, 0.45, split="test", label="unknown")
    assert [i.image_id for i in queue.list_items(QueueFilter(dataset="other"))] == [in_other.id]
    assert [i.image_id for i in queue.list_items(QueueFilter(split="test"))] == [in_test.id]
    assert [i.image_id for i in queue.list_items(QueueFilter(verdict="real"))] == [in_test.id]
    assert queue.counts(QueueFilter(dataset="other"))["uncertain"] == 1
    assert queue.list_items(QueueFilter(bucket="ood")) == []


def test_dataset_filter_follows_membership_links(version):
    from webapp.models import DatasetImage

    image = make_scored_image(version, 0.5, label="unknown")
    linked = make_dataset("linked")
    db.session.add(
        DatasetImage(dataset_id=linked.id, image_id=image.id, original_path="x", label="unknown")
    )
    db.session.commit()
    assert [i.image_id for i in queue.list_items(QueueFilter(dataset="linked"))] == [image.id]


@pytest.mark.parametrize(
    "bad, message",
    [
        (QueueFilter(bucket="nope"), "unknown bucket"),
        (QueueFilter(dataset="nope"), "unknown dataset"),
        (QueueFilter(split="nope"), "unknown split"),
        (QueueFilter(verdict="maybe"), "unknown verdict"),
    ],
)
def test_bad_filters_are_explained(version, bad, message):
    with pytest.raises(QueueError, match=message):
        queue.list_items(bad)


def test_no_active_version_means_an_empty_queue(app_ctx):
    assert queue.list_items() == []
    assert set(queue.counts().values()) == {0}
    assert leases.claim_next(make_user("ann").id) is None


def test_new_predictions_and_a_new_active_version_rebuild_the_queue(version):
    first = make_scored_image(version, 0.5, label="unknown")
    assert [i.image_id for i in queue.list_items()] == [first.id]
    later = make_scored_image(version, 0.49, label="unknown")
    assert [i.image_id for i in queue.list_items()] == [first.id, later.id]
    v2 = make_version("v2")
    make_prediction(first, v2, 0.99)
    make_prediction(later, v2, 0.4)
    assert [i.image_id for i in queue.list_items()] == [later.id]
    assert db.session.scalar(select(QueueBuild.model_version_id)) == v2.id


def test_an_import_that_relabels_images_rebuilds_the_queue(version):
    from webapp.models import ImportRun

    image = make_scored_image(version, 0.9, label="fake")  # a confident, right call
    assert queue.list_items() == []
    image.label = "real"  # what a re-import with the other label does
    db.session.add(ImportRun(dataset_id=image.dataset_id, source="again", finished_at=utcnow()))
    db.session.commit()
    assert [(i.image_id, i.bucket) for i in queue.list_items()] == [(image.id, "misclassified")]


def test_decided_items_leave_the_queue_and_rebuild_agrees(zoo):
    ann = make_user("ann")
    decide(ann, zoo["li_high"], "fake")
    decide(ann, zoo["unc_close"], "skip")
    open_now = [item.image_id for item in queue.list_items(limit=100)]
    assert zoo["li_high"] not in open_now
    assert zoo["unc_close"] in open_now  # a skip is not a decision on the label
    materialise.invalidate()
    assert [item.image_id for item in queue.list_items(limit=100)] == open_now


# ----------------------------------------------------------------------------- leases


def test_claims_follow_queue_order_and_never_overlap(zoo):
    ann, bob = make_user("ann"), make_user("bob")
    first = leases.claim_next(ann.id)
    second = leases.claim_next(bob.id)
    assert (first.image_id, second.image_id) == (zoo["li_high"], zoo["li_low"])
    assert first.bucket == "label_issue"
    # Ann's unexpired lease is served to her again (a reload loses nothing)...
    assert leases.claim_next(ann.id).image_id == zoo["li_high"]
    # ...unless her screen says it holds it already: then she gets the next free item.
    assert leases.claim_next(ann.id, holding=[zoo["li_high"]]).image_id == zoo["mis_confident"]
    assert leases.lease_holder(zoo["li_high"]) == ann.id
    anns = select(Lease.image_id).where(Lease.user_id == ann.id, Lease.expires_at > utcnow())
    assert sorted(db.session.scalars(anns)) == sorted([zoo["li_high"], zoo["mis_confident"]])


def test_expired_leases_free_the_item(zoo):
    ann, bob = make_user("ann"), make_user("bob")
    held = leases.claim_next(ann.id).image_id
    db.session.execute(
        update(Lease).where(Lease.image_id == held).values(expires_at=utcnow() - timedelta(1))
    )
    db.session.commit()
    assert leases.lease_holder(held) is None
    assert leases.claim_next(bob.id).image_id == held


def test_lease_length_comes_from_config(zoo, app):
    app.config["LEASE_SECONDS"] = 60
    claim = leases.claim_next(make_user("ann").id)
    remaining = (claim.expires_at - utcnow()).total_seconds()
    assert 50 < remaining <= 60


def test_claim_respects_filters(zoo):
    claim = leases.claim_next(make_user("ann").id, QueueFilter(bucket="ood"))
    assert claim.image_id == zoo["ood_high"]


def test_skipped_items_go_to_others_not_back_to_the_skipper(zoo):
    ann, bob = make_user("ann"), make_user("bob")
    first = leases.claim_next(ann.id).image_id
    decide(ann, first, "skip")
    assert leases.claim_next(ann.id).image_id != first
    assert leases.claim_next(bob.id).image_id == first


def test_releasing_gives_items_back(zoo):
    ann, bob = make_user("ann"), make_user("bob")
    held = leases.claim_next(ann.id).image_id
    assert leases.release(ann.id, [held]) == 1
    assert leases.claim_next(bob.id).image_id == held


def test_a_reviewer_cannot_hoard(zoo):
    with pytest.raises(QueueError, match="at most"):
        leases.claim_next(make_user("ann").id, holding=range(1, leases.MAX_HELD + 2))


def test_opening_an_item_held_by_someone_else_is_refused(zoo):
    ann, bob = make_user("ann"), make_user("bob")
    held = leases.claim_next(ann.id).image_id
    with pytest.raises(buckets.ItemHeld):
        leases.claim_image(bob.id, held)
    with pytest.raises(buckets.ItemHeld):
        decisions.decide(bob, held, "real")
    assert db.session.scalar(select(ReviewDecision.id)) is None


def test_concurrent_reviewers_never_share_an_item(app, version):
    """Two threads, each its own session and connection, claim and decide until the queue is dry."""
    for index in range(24):
        make_scored_image(version, 0.36 + index * 0.01, label="unknown")
    users = [make_user("ann"), make_user("bob")]
    served: dict[str, list[int]] = {"ann": [], "bob": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(username: str, user_id: int) -> None:
        try:
            with app.app_context():
                user = db.session.get(type(users[0]), user_id)
                start.wait()
                while (claim := leases.claim_next(user_id)) is not None:
                    served[username].append(claim.image_id)
                    decisions.decide(user, claim.image_id, "real")
                db.session.remove()
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(u.username, u.id)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert not set(served["ann"]) & set(served["bob"])
    assert len(served["ann"]) + len(served["bob"]) == 24
    decided = db.session.scalars(select(ReviewDecision.image_id)).all()
    assert sorted(decided) == sorted(served["ann"] + served["bob"])
