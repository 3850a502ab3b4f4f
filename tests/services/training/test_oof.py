"""Held-out networks and training margins for the "suspected label mistake" bucket, through the
real job queue."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from tests.helpers import csrf_token
from tests.services.training.test_training import latest_job, tiny_dataset  # noqa: F401
from webapp.extensions import db
from webapp.jobs import wait_for
from webapp.models import JobState, Prediction
from webapp.services.records import versions
from webapp.services.training.oof_training import read_out_of_fold
from webapp.services.training.trainset import CLASS_INDEX, labelled_images


@pytest.mark.slow
def test_train_with_held_out_networks_scores_label_issues_from_them(
    tiny_dataset,  # noqa: F811
    worker,
    runner,
):
    args = ["model", "train", "--epochs", "1", "--oof-folds", "2", "--oof-epochs", "2", "--wait"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    assert "2 held-out networks over" in result.output
    held_out = latest_job("oof")
    assert held_out.state == JobState.SUCCEEDED, held_out.error
    version = versions.active_version()
    assert "epochs 2" in held_out.log
    # about 19 images a fold: the version's batch would be one step an epoch, so the held-out
    # networks train at the smallest batch, and the log says so
    batch = version.train_args["batch_size"]
    assert batch > 32 and "batch 32 (learning rate" in held_out.log
    assert f"instead of the version's {batch}" in held_out.log
    out_of_fold, method = read_out_of_fold(version)
    assert method == "folds"
    trained = set(versions.training_ids(version).tolist())
    assert set(out_of_fold) == trained and trained
    rows = {
        row.image_id: row
        for row in db.session.scalars(
            select(Prediction).where(Prediction.model_version_id == version.id)
        )
    }
    part = labelled_images("tiny")
    for image_id, label in zip(part.ids, part.labels, strict=True):
        row = rows[image_id]
        expected = out_of_fold[image_id] if image_id in trained else row.p_fake
        assert row.oos_p_fake == pytest.approx(expected)
        p_given = expected if label == CLASS_INDEX["fake"] else 1 - expected
        assert row.label_issue_score == pytest.approx(1 - p_given)
    # the held-out networks are not the version: on its own training images they differ
    own = np.array([rows[i].p_fake for i in trained])
    assert not np.allclose(own, [out_of_fold[i] for i in trained])


def test_one_fold_is_refused(app, runner):
    result = runner.invoke(args=["model", "train", "--oof-folds", "1"])
    assert result.exit_code != 0 and "--oof-folds" in result.output


@pytest.mark.slow
def test_train_with_margins_ranks_training_images_by_their_training_margins(
    tiny_dataset,  # noqa: F811
    worker,
    runner,
):
    args = ["model", "train", "--epochs", "1", "--oof-method", "margins", "--oof-epochs", "2"]
    result = runner.invoke(args=[*args, "--wait"])
    assert result.exit_code == 0, result.output
    assert "training margins over" in result.output
    job = latest_job("oof")
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.params["method"] == "margins" and job.result["method"] == "margins"
    assert "its training margins ranking label mistakes" in job.log and "epochs 2" in job.log
    version = versions.active_version()
    at_margins, method = read_out_of_fold(version)
    assert method == "margins"
    trained = set(versions.training_ids(version).tolist())
    part = labelled_images("tiny")
    # the margins network ranks every labelled image, the version's val and test images too
    assert set(at_margins) == set(part.ids) and trained < set(part.ids)
    rows = {
        row.image_id: row
        for row in db.session.scalars(
            select(Prediction).where(Prediction.model_version_id == version.id)
        )
    }
    for image_id, label in zip(part.ids, part.labels, strict=True):
        row = rows[image_id]
        judged = at_margins[image_id]
        p_given = judged if label == CLASS_INDEX["fake"] else 1 - judged
        assert row.label_issue_score == pytest.approx(1 - p_given)
        if image_id not in trained:  # the version never saw it: its own p(fake)
            assert row.oos_p_fake == pytest.approx(row.p_fake)
    # a margin is not an out-of-sample probability: the trained-on images keep the light
    # model's out-of-sample p(fake), which the margins' p(fake) is not
    light = [rows[i].oos_p_fake for i in trained]
    assert all(value is not None for value in light)
    assert not np.allclose(light, [at_margins[i] for i in trained])


@pytest.mark.slow
def test_margins_of_two_networks_are_averaged(app, tiny_dataset, worker, runner):  # noqa: F811
    app.config["ENGINE_TUNING"] = "quick"  # so each network's precision is measured and logged
    args = ["model", "train", "--epochs", "1", "--oof-method", "margins", "--oof-epochs", "1"]
    result = runner.invoke(args=[*args, "--oof-networks", "2", "--wait"])
    assert result.exit_code == 0, result.output
    assert "training margins of 2 networks over" in result.output
    job = latest_job("oof")
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.params["networks"] == 2 and job.result["networks"] == 2
    assert "2 networks (their margins averaged)" in job.log
    # the second takes the next turn of model.margins.VIEWS, and the log says which
    assert "each network seeded apart, with 1: the recipe; 2: stem medium" in job.log
    # each architecture timed for itself (the version's stored precision is not reused)
    timed = [line for line in job.log.splitlines() if "training precision" in line]
    assert len(timed) == 2 and "stem medium:" in timed[1] and "stem" not in timed[0]
    # the bar counted the epochs of both networks
    assert job.progress["done"] == job.progress["total"] == 2
    at_margins, method = read_out_of_fold(versions.active_version())
    assert method == "margins" and len(at_margins) == len(labelled_images("tiny").ids)


@pytest.mark.slow
def test_the_versions_page_trains_with_margins(client, auth, tiny_dataset, worker):  # noqa: F811
    auth.login("admin")
    page = client.get("/admin/versions").get_data(as_text=True)
    assert '<option value="margins">training margins (one more training)</option>' in page
    assert '<option value="2">2, averaged</option>' in page
    form = {"csrf_token": csrf_token(client, "/admin/versions"), "epochs": "1"}
    posted = {**form, "oof_method": "margins", "oof_networks": "2"}
    assert client.post("/admin/train", data=posted).status_code == 302
    trained = wait_for(latest_job("train").id, timeout=300, poll=0.1)
    assert trained.state == JobState.SUCCEEDED, trained.error
    assert trained.params["oof_method"] == "margins" and trained.params["oof_networks"] == 2
    judged = wait_for(latest_job("oof").id, timeout=300, poll=0.1)
    assert judged.state == JobState.SUCCEEDED, judged.error
    assert judged.params["method"] == "margins" and judged.result["images"] > 0
    assert judged.result["networks"] == 2


@pytest.mark.parametrize("method", ["", "folds"])
def test_the_forms_networks_are_read_with_margins_only(client, auth, tiny_dataset, method):  # noqa: F811
    """The page always posts its networks select; with another method it means nothing."""
    auth.login("admin")
    form = {"csrf_token": csrf_token(client, "/admin/versions"), "epochs": "1"}
    posted = {**form, "oof_method": method, "oof_networks": "3"}
    assert client.post("/admin/train", data=posted).status_code == 302
    params = latest_job("train").params
    assert "oof_networks" not in params and params.get("oof_method") == (method or None)


def test_networks_apply_to_margins_only(app, runner):
    for extra in ([], ["--oof-method", "folds"]):
        result = runner.invoke(args=["model", "train", "--oof-networks", "2", *extra])
        assert result.exit_code != 0
        assert "--oof-networks applies to --oof-method margins" in result.output


def test_oof_epochs_need_a_label_check(app, runner):
    result = runner.invoke(args=["model", "train", "--oof-epochs", "3"])
    assert result.exit_code != 0
    assert "--oof-epochs applies with --oof-method or --oof-folds" in result.output


@pytest.mark.slow
def test_a_head_refit_can_judge_labels_too(tiny_dataset, worker, runner):  # noqa: F811
    first = runner.invoke(args=["model", "train", "--epochs", "1", "--wait"])  # scores: features
    assert first.exit_code == 0, first.output
    assert versions.active_version().name == "v1"
    args = ["model", "train", "--head-only", "--oof-method", "margins", "--wait"]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    judged = latest_job("oof")
    assert judged.state == JobState.SUCCEEDED, judged.error
    assert judged.params["version"] == "v2" and judged.params["method"] == "margins"
    # the head refit reuses v1's network, so its margins network trains v1's recipe
    assert f"epochs {versions.get_version('v1').epochs}" in judged.log
    assert latest_job("predict").params["version"] == "v2"


def test_margins_take_no_fold_count(app, runner):
    args = ["model", "train", "--oof-method", "margins", "--oof-folds", "3"]
    result = runner.invoke(args=args)
    assert result.exit_code != 0 and "--oof-folds applies to --oof-method folds" in result.output
