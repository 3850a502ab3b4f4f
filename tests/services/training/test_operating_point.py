"""The operating point: each version's FAKE threshold, fitted for a target false-positive rate on
real images, drives its verdicts, the queue's audit sample, the reports and the evaluation; a
recalibration on a labelled dataset records a new version with its own threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import func, insert, select

from model.calibration import apply_temperature
from model.checkpoint import load_checkpoint
from model.metrics import threshold_for_fpr
from model.predict import Predictor
from tests.factories import (
    make_active_version,
    make_dataset,
    make_image,
    make_scored_image,
    make_version,
)
from tests.services.training.test_training import latest_job, tiny_dataset, train_and_wait  # noqa: F401
from webapp.extensions import db
from webapp.jobs import wait_for
from webapp.models import JobState, ModelVersion, Prediction
from webapp.services.importing.pixels import load_pixels
from webapp.services.records import versions
from webapp.services.review import queue
from webapp.services.training.trainset import labelled_images


def test_a_version_without_a_fitted_threshold_calls_at_one_half(app_ctx):
    db.session.execute(
        insert(ModelVersion).values(
            name="old", checkpoint_path="", image_size=32, init_weights="random"
        )
    )
    db.session.commit()
    old = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "old"))
    assert old.threshold == 0.5


def test_the_audit_sample_takes_only_confident_calls_at_the_threshold(app_ctx):
    version = make_version("v1")
    version.threshold = 0.9
    db.session.commit()
    # p = 0.8 is outside the uncertain band, but below the threshold: a hesitant REAL call.
    hesitant = make_scored_image(version, 0.8, label="unknown", audit_key=0.001, verdict="real")
    confident_fake = make_scored_image(
        version, 0.95, label="unknown", audit_key=0.002, verdict="fake"
    )
    confident_real = make_scored_image(
        version, 0.1, label="unknown", audit_key=0.003, verdict="real"
    )
    audited = {item.image_id for item in queue.list_items(limit=100) if item.bucket == "audit"}
    assert audited == {confident_fake.id, confident_real.id}
    assert hesitant.id not in audited


@pytest.mark.slow
def test_training_fits_the_threshold_and_everything_uses_it(
    app,
    tiny_dataset,  # noqa: F811
    worker,
    runner,
    client,
    auth,
):
    app.config["TARGET_FPR"] = 0.0  # no real validation image may be called fake
    job = train_and_wait()
    assert job.state == JobState.SUCCEEDED, job.error
    scoring = wait_for(latest_job("predict").id, timeout=300, poll=0.1)
    assert scoring.state == JobState.SUCCEEDED, scoring.error
    version = versions.active_version()
    saved = versions.training_labels(version)
    scores = dict(
        db.session.execute(
            select(Prediction.image_id, Prediction.p_fake).where(
                Prediction.model_version_id == version.id
            )
        ).all()
    )
    val_real = [
        scores[i] for i, y in zip(saved["val_ids"], saved["val_labels"], strict=True) if y == 0
    ]
    assert version.threshold > max(val_real)
    assert version.metrics["val"]["operating_point"]["fpr"] == 0.0
    assert version.metrics["val"]["target_fpr"] == 0.0
    verdicts = db.session.execute(
        select(Prediction.p_fake, Prediction.verdict).where(
            Prediction.model_version_id == version.id
        )
    ).all()
    assert all(v == ("fake" if p >= version.threshold else "real") for p, v in verdicts)

    result = runner.invoke(args=["model", "evaluate", "--dataset", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    measured = json.loads(result.output)
    assert measured["threshold"] == version.threshold
    assert set(measured["tpr_at_fpr"]) == {"0.01", "0.05"}
    assert 0.0 <= measured["average_precision"] <= 1.0
    labels = np.asarray(labelled_images("tiny").labels)
    p_fake = np.asarray([scores[i] for i in labelled_images("tiny").ids])
    fakes_called = ((p_fake >= version.threshold) & (labels == 1)).sum()
    assert measured["per_class"]["fake"]["recall"] == pytest.approx(fakes_called / labels.sum())

    auth.login("admin")
    page = client.get("/admin/versions").get_data(as_text=True)
    assert f"FAKE at p ≥ {version.threshold:.3f}" in page
    assert 'class="operating-point"' in page  # the dot on the ROC curve


@pytest.fixture
def untrained_version(tiny_dataset):  # noqa: F811
    """An active version with an untrained network: its calibration is visibly wrong."""
    return make_active_version()


def test_calibrate_records_a_new_version_fitted_on_the_dataset(untrained_version, runner):
    result = runner.invoke(
        args=["model", "calibrate", "--dataset", "tiny", "--target-fpr", "0.05", "--no-score"]
    )
    assert result.exit_code == 0, result.output
    assert "recorded v2 (v1 recalibrated on tiny, 48 images)" in result.output
    db.session.expire_all()
    parent = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "v1"))
    child = db.session.scalar(select(ModelVersion).where(ModelVersion.name == "v2"))
    assert (child.kind, child.parent_id, child.is_active) == ("calib", parent.id, False)
    assert (parent.threshold, parent.temperature) == (0.5, 1.0)  # the parent is untouched
    # Recompute from the new checkpoint: its temperature, and the threshold at 5% FPR.
    _, meta = load_checkpoint(child.checkpoint_path)
    assert meta["temperature"] == child.temperature
    ids, labels = labelled_images("tiny").as_arrays()
    output = Predictor.from_checkpoint(child.checkpoint_path).predict(load_pixels(ids, 32))
    np.testing.assert_allclose(output.p_fake, apply_temperature(output.logits, child.temperature))
    assert child.threshold == pytest.approx(threshold_for_fpr(labels, output.p_fake, 0.05))
    fitted = child.metrics["calibration"]
    assert fitted["dataset"] == "tiny" and fitted["operating_point"]["fpr"] <= 0.05
    assert child.train_args["calibrated_on"] == "tiny"
    assert child.history is None  # it trained no epochs: none of its parent's curves


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--dataset", "onlyreal"], "needs labelled images of both classes"),
        (["--dataset", "tiny", "--target-fpr", "2"], "must be in [0, 1)"),
        (["--dataset", "tiny", "--version", "v9"], "unknown model version 'v9'"),
    ],
)
def test_calibrate_refuses_bad_input_and_records_nothing(untrained_version, runner, args, message):
    only_real = make_dataset("onlyreal")
    make_image(dataset=only_real, label="real")
    result = runner.invoke(args=["model", "calibrate", *args, "--no-score"])
    assert result.exit_code != 0
    assert message in result.output
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 1
