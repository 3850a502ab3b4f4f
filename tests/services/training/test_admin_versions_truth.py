"""Versions tell the truth (lineage, own training data, comparisons only on images no compared
version trained on, the activation's verdict shift) and jobs read like a person wrote them."""

from __future__ import annotations

import numpy as np
import pytest

from tests.factories import (
    make_dataset,
    make_decision,
    make_prediction,
    make_seeded_image,
    make_version,
)
from webapp.extensions import db
from webapp.models import Job, JobState, utcnow
from webapp.services.admin import job_views
from webapp.services.records import versions
from webapp.services.training.comparison import compare_versions, verdict_shift


def save_trained(version, train_ids, train_labels, val_ids=()):
    path = versions.training_labels_path(version.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        train_ids=np.asarray(train_ids, dtype=np.int64),
        train_labels=np.asarray(train_labels, dtype=np.int64),
        val_ids=np.asarray(val_ids, dtype=np.int64),
        val_labels=np.zeros(len(val_ids), dtype=np.int64),
    )


@pytest.fixture
def reviewed_pair(app_ctx):
    """v1 full, v2 a head refit of v1 trained on two of the four reviewed images."""
    dataset = make_dataset("d")
    v1 = make_version("v1", active=True, history=[{"epoch": 1, "train_loss": 0.5}])
    v2 = make_version("v2", parent=v1, history=v1.history, active=False)
    v2.kind = "head"
    db.session.commit()
    images = [
        make_seeded_image(dataset, label, "train", seed=i)
        for i, label in enumerate(["real", "real", "fake", "fake"])
    ]
    scores = [(0.7, 0.1), (0.2, 0.3), (0.3, 0.9), (0.8, 0.6)]
    for image, (p1, p2) in zip(images, scores, strict=True):
        make_prediction(image, v1, p1, ood_score=None, audit_key=0.0)
        make_prediction(image, v2, p2, ood_score=None, audit_key=0.0)
        make_decision(image, "ann", image.label, v1)
    save_trained(v1, [], [])
    save_trained(v2, [images[0].id, images[2].id], [0, 1])
    return v1, v2, images


def test_reviewed_comparison_leaves_out_what_a_version_trained_on(reviewed_pair):
    comparison = compare_versions()
    reviewed = comparison["reviewed"]
    assert (reviewed["n_total"], reviewed["excluded"], reviewed["unknown"]) == (2, 2, [])
    assert reviewed["v2"]["n"] == 2


def test_comparison_says_when_it_cannot_be_made(reviewed_pair):
    v1, v2, images = reviewed_pair
    save_trained(v2, [image.id for image in images], [0, 0, 1, 1])
    reviewed = compare_versions()["reviewed"]
    assert reviewed["n_total"] == 0 and reviewed["excluded"] == 4
    assert reviewed["v1"] is None and reviewed["v2"] is None


def test_lineage_and_training_data_are_the_versions_own(reviewed_pair):
    v1, v2, _ = reviewed_pair
    assert versions.lineage(v2).startswith("Head refit of v1")
    assert versions.lineage(v1) == "Full training from random weights."
    assert versions.training_data(v2) == {"train": 2, "val": 0, "real": 1, "fake": 1, "reviewed": 2}


def test_activation_shift_counts_each_direction(reviewed_pair):
    v1, v2, _ = reviewed_pair
    # v1 -> v2: image 0 fake->real, image 2 real->fake; the other two keep their verdicts
    assert verdict_shift(v2, v1) == {"real_to_fake": 1, "fake_to_real": 1}
    assert verdict_shift(v1, v1) == {"real_to_fake": 0, "fake_to_real": 0}


def _job(**fields) -> Job:
    job = Job(kind="train", params={"epochs": 12, "image_size": 64}, **fields)
    db.session.add(job)
    db.session.commit()
    return job


def test_a_succeeded_training_reads_as_sentences_and_links(reviewed_pair, app):
    v1, v2, _ = reviewed_pair
    started = utcnow()
    job = _job(
        state=JobState.SUCCEEDED,
        progress={"fraction": 0.98, "epoch": 12, "epochs": 12},
        result={"version": "v2"},
        started_at=started,
        finished_at=started,
    )
    with app.test_request_context():
        view = job_views.describe(job)
    assert view.title == "Training v2 from random weights"
    assert view.fraction == 1.0 and view.status == "Succeeded in 0 s" and view.error == ""
    assert view.size == "12 epochs · 64 px"
    assert view.sentences[0].startswith("It registered version v2")
    assert "not active" in view.sentences[-1]
    labels = [link["label"] for link in view.links]
    assert labels == ["Version v2", "Compare versions", "Activate v2…"]


def test_a_trainings_title_says_which_weights_it_started_from_once_known(reviewed_pair, app):
    v1, _, _ = reviewed_pair
    queued = _job(state=JobState.QUEUED)
    v1.init_weights = "imagenet"
    db.session.commit()
    done = _job(state=JobState.SUCCEEDED, result={"version": "v1"})
    with app.test_request_context():
        assert job_views.describe(queued).title == "Training a new version"
        assert job_views.describe(done).title == "Fine-tuning v1 from ImageNet weights"


def test_a_label_mistake_job_says_what_it_trains_and_over_how_many_images(app_ctx, app):
    folds = Job(kind="oof", state=JobState.RUNNING, params={"version": "v1", "folds": 5})
    folds.progress = {"stage": "out-of-fold", "done": 2, "total": 5}
    margins = Job(kind="oof", state=JobState.SUCCEEDED)
    margins.params = {"version": "v2", "method": "margins"}
    margins.result = {"version": "v2", "method": "margins", "images": 3200}
    db.session.add_all([folds, margins])
    db.session.commit()
    with app.test_request_context():
        running, done = job_views.describe(folds), job_views.describe(margins)
    assert running.title == "5 held-out networks for v1's label mistakes"
    assert running.size == ""  # its progress counts folds, not images
    assert done.title == "Training margins of every labelled image, for v2's label mistakes"
    assert done.size == "3,200 labelled images"
    margins.result["agreement"] = 0.9684
    with app.test_request_context():
        assert job_views.describe(margins).sentences == [
            "Judged the labels of 3,200 images with the training margins of one network, which "
            "side with 96.8% of them; the scoring it queued ranks suspected label mistakes by them."
        ]
    margins.params = {**margins.params, "networks": 3}
    margins.result = {**margins.result, "networks": 3}
    with app.test_request_context():
        averaged = job_views.describe(margins)
    assert averaged.title == (
        "Training margins (3 networks) of every labelled image, for v2's label mistakes"
    )
    assert averaged.sentences[0].startswith(
        "Judged the labels of 3,200 images with the training margins of 3 networks, averaged, "
    )


def test_a_trainings_test_figure_says_how_many_images_and_a_scoring_its_size(reviewed_pair, app):
    _, v2, _ = reviewed_pair
    v2.metrics = {"test": {"accuracy": 1.0, "n": 37, "roc_auc": 1.0}}
    db.session.commit()
    job = _job(state=JobState.SUCCEEDED, result={"version": "v2"})
    scoring = Job(kind="predict", params={"version": "v2"}, state=JobState.SUCCEEDED)
    scoring.result = {"scored": 1200, "already_scored": 34}
    db.session.add(scoring)
    db.session.commit()
    with app.test_request_context():
        sentence = job_views.describe(job).sentences[1]
        size = job_views.describe(scoring).size
    assert sentence.startswith("On the test split (37 images) it is right 100.0% of the time")
    assert size == "1,234 images"


def test_a_running_job_says_stage_speed_and_time_left(app_ctx, app):
    progress = {"phase": "train", "epoch": 2, "epochs": 5, "batch": 3, "batches": 10}
    progress |= {"images_per_s": 41.6, "eta_s": 75, "fraction": 0.26}
    job = _job(state=JobState.RUNNING, progress=progress)
    with app.test_request_context():
        view = job_views.describe(job)
    assert (
        view.status == "train · epoch 2 of 5 · batch 3 of 10 · 42 images/s · about 1 min 15 s left"
    )
    assert view.fraction == 0.26


def test_a_failed_job_shows_its_message_and_keeps_the_traceback_apart(app_ctx, app):
    trace = (
        'Traceback (most recent call last):\n  File "x.py", line 1\n'
        "ValueError: the train split needs images"
    )
    job = _job(state=JobState.FAILED, error=trace)
    with app.test_request_context():
        view = job_views.describe(job)
    assert view.error == "the train split needs images" and view.error_detail == trace
    assert view.sentences == [] and view.links == []


def test_derived_versions_store_no_curves_and_the_page_says_whose_they_are(app, client, auth):
    with app.app_context():
        curves = [{"epoch": e, "train_loss": 1.0 / e, "val_accuracy": 0.5} for e in (1, 2)]
        v1 = make_version("v1", active=True, history=curves)
        v1.train_args = {"epochs": 12}
        db.session.commit()
        head = versions.register_child(v1, "v2", "head", "/nonexistent/v2.pt")
        calib = versions.register_child(
            v1, "v3", "calib", "/nonexistent/v3.pt", train_args={"calibrated_on": "news"}
        )
        assert (head.history, calib.history) == (None, None)
        assert v1.history == curves
    auth.login("admin")
    page = client.get("/admin/versions").get_data(as_text=True)
    assert "v1 · loss and accuracy per epoch" in page
    for name in ("v2", "v3"):
        assert f"{name} · loss and accuracy per epoch" not in page
    assert "No training curves: v2 is a head refit of v1" in page
    assert "No training curves: v3 is a recalibration of v1" in page
    assert "Recalibration of v1 on news" in page
    assert page.count('<a class="parent-link" href="#version-v1">v1</a>') == 2
    assert page.count("none (v1's network)") == 2  # not the parent's 12 epochs


def test_the_overview_names_an_active_head_refit_by_its_parent(app, client, auth):
    with app.app_context():
        v1 = make_version("v1", active=True)
        versions.activate(versions.register_child(v1, "v2", "head", "/nonexistent/v2.pt"))
        make_dataset("only")
        one_epoch = _job(state=JobState.QUEUED)
        one_epoch.params = {"epochs": 1, "image_size": 32}
        db.session.commit()
        with app.test_request_context():
            assert job_views.describe(one_epoch).size == "1 epoch · 32 px"
    auth.login("admin")
    page = client.get("/admin/").get_data(as_text=True)
    assert "32 px · head refit of v1 ·" in page and "init random" not in page
    assert "1 dataset</div>" in page
