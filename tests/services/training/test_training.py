"""Training, scoring and evaluating through the real job queue, on a tiny generated dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.jobs import submit, wait_for
from webapp.models import Image, Job, JobState, ModelVersion, Prediction
from webapp.services.importing.importer import import_path
from webapp.services.records import versions

EVALUATE_KEYS = {
    "version",
    "dataset",
    "n",
    "accuracy",
    "roc_auc",
    "ece",
    "brier",
    "per_class",
    "confusion_matrix",
}


def write_separable_folder(root, per_class: int = 24, size: int = 24) -> None:
    """Reals are smooth gradients, fakes carry a checkerboard: easy for a network to tell apart."""
    rng = np.random.default_rng(7)
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            ramp = np.linspace(0, 200, size)[None, :, None] + rng.uniform(0, 50, (1, 1, 3))
            pixels = np.broadcast_to(ramp, (size, size, 3)).copy()
            if label == "fake":
                checker = (np.indices((size, size)).sum(axis=0) % 2)[..., None] * 60.0
                pixels = pixels + checker
            pixels += rng.normal(0, 4, pixels.shape)
            image = PILImage.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            image.save(root / label / f"{label}_{index}.png")


@pytest.fixture
def tiny_dataset(app_ctx, tmp_path):
    write_separable_folder(tmp_path / "src")
    report = import_path(tmp_path / "src", dataset="tiny", workers=1)
    assert report.as_json()["imported"] == 48
    return "tiny"


def train_and_wait(**params) -> Job:
    job = submit("train", {"epochs": 1, "image_size": 32, **params})
    return wait_for(job.id, timeout=300, poll=0.1)


def latest_job(kind: str) -> Job:
    return db.session.scalar(select(Job).where(Job.kind == kind).order_by(Job.id.desc()))


@pytest.mark.slow
def test_train_then_score_every_image(tiny_dataset, worker):
    job = train_and_wait()
    assert job.state == JobState.SUCCEEDED, job.error
    version = versions.active_version()
    assert version is not None and version.name == job.result["version"]
    assert version.init_weights == "random"
    assert len(version.history) == 1
    assert {"val"} <= set(version.metrics)
    scoring = wait_for(latest_job("predict").id, timeout=300, poll=0.1)
    assert scoring.state == JobState.SUCCEEDED, scoring.error
    n_images = db.session.scalar(select(func.count(Image.id)))
    predictions = db.session.scalars(
        select(Prediction).where(Prediction.model_version_id == version.id)
    ).all()
    assert len(predictions) == n_images
    for prediction in predictions:
        assert 0.0 <= prediction.p_fake <= 1.0
        assert prediction.verdict == ("fake" if prediction.p_fake >= version.threshold else "real")
        assert prediction.label_issue_score is not None
        assert prediction.ood_score is not None
    # scoring again adds nothing: one row per (image, version), never overwritten
    again = wait_for(submit("predict", {"version": version.name}).id, timeout=300, poll=0.1)
    assert again.result["version"] == version.name
    assert (again.result["scored"], again.result["already_scored"]) == (0, n_images)
    stages = {"network", "out_of_sample", "out_of_distribution", "write"}
    assert set(again.result["seconds"]) == stages


@pytest.mark.slow
def test_second_version_is_not_activated_by_itself(tiny_dataset, worker):
    first = train_and_wait(score=False)
    second = train_and_wait(score=False)
    assert first.state == second.state == JobState.SUCCEEDED
    assert versions.active_version().name == first.result["version"]
    versions.activate(versions.get_version(second.result["version"]))
    assert versions.active_version().name == second.result["version"]


def test_training_without_labels_fails_and_keeps_active_version(app_ctx, worker, tmp_path):
    (tmp_path / "flat").mkdir()
    from tests.helpers import make_image_bytes

    for index in range(4):
        (tmp_path / "flat" / f"{index}.jpg").write_bytes(make_image_bytes(seed=index))
    import_path(tmp_path / "flat", dataset="unlabelled", workers=1)
    job = train_and_wait()
    assert job.state == JobState.FAILED
    assert "both classes" in job.error
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 0


def test_training_is_one_job_at_a_time(app_ctx):
    first = submit("train", {"epochs": 1})
    second = submit("train", {"epochs": 1})
    assert first.id == second.id
    assert first.state == JobState.QUEUED


@pytest.mark.slow
def test_cli_evaluate_json_and_list(tiny_dataset, worker, runner):
    assert train_and_wait().state == JobState.SUCCEEDED
    wait_for(latest_job("predict").id, timeout=300, poll=0.1)
    result = runner.invoke(args=["model", "evaluate", "--dataset", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert set(metrics) >= EVALUATE_KEYS
    assert metrics["n"] == 48
    assert set(metrics["per_class"]) == {"real", "fake"}
    assert sum(map(sum, metrics["confusion_matrix"])) == 48
    listing = runner.invoke(args=["model", "list"])
    assert listing.output.startswith("* v1")
    assert runner.invoke(args=["model", "activate", "v9"]).exit_code != 0


def override_labels(image_ids, new_label: str = None) -> dict[int, str]:
    """An admin overrides the labels of ``image_ids`` (flipping each unless a label is given)."""
    from tests.factories import decide
    from tests.helpers import make_user

    admin = make_user("lead", role="admin")
    chosen = {}
    for image in db.session.scalars(select(Image).where(Image.id.in_(image_ids))):
        label = new_label or ("real" if image.label == "fake" else "fake")
        decide(admin, image.id, label, note="checked by hand")
        chosen[image.id] = label
    return chosen


def trained_label_set(version_name: str) -> dict[int, int]:
    saved = versions.training_labels(versions.get_version(version_name))
    return dict(zip(saved["train_ids"].tolist(), saved["train_labels"].tolist(), strict=True))


@pytest.mark.slow
def test_retraining_uses_reviewed_labels_and_counts_changes(tiny_dataset, worker):
    first = train_and_wait(score=False)
    assert first.state == JobState.SUCCEEDED, first.error
    before = trained_label_set(first.result["version"])
    flipped = sorted(before)[:3]
    chosen = override_labels(flipped)
    unsure = sorted(before)[3]
    override_labels([unsure], "unsure")
    second = train_and_wait(score=False)
    assert second.state == JobState.SUCCEEDED, second.error
    after = trained_label_set(second.result["version"])
    for image_id in flipped:
        assert after[image_id] == {"real": 0, "fake": 1}[chosen[image_id]]
        assert after[image_id] != before[image_id]
    assert unsure not in after  # images decided "unsure" are left out
    version = versions.get_version(second.result["version"])
    assert version.labels_changed == 4
    assert versions.active_version().name == first.result["version"]


@pytest.mark.slow
def test_head_only_refresh_scores_from_cached_features(tiny_dataset, worker):
    first = train_and_wait()
    assert first.state == JobState.SUCCEEDED, first.error
    assert wait_for(latest_job("predict").id, timeout=300).state == JobState.SUCCEEDED
    override_labels(sorted(trained_label_set(first.result["version"]))[:2])
    head = wait_for(submit("train", {"head_only": True}).id, timeout=300, poll=0.1)
    assert head.state == JobState.SUCCEEDED, head.error
    version = versions.get_version(head.result["version"])
    assert version.kind == "head" and version.parent.name == first.result["version"]
    assert version.parent.history and version.history is None  # the parent's curves stay its
    assert version.labels_changed == 2
    assert {"train", "val"} <= set(version.metrics)
    scoring = wait_for(latest_job("predict").id, timeout=300, poll=0.1)
    assert scoring.state == JobState.SUCCEEDED, scoring.error
    assert scoring.result["scored"] == db.session.scalar(select(func.count(Image.id)))


def test_progress_fraction_counts_epochs_and_batches():
    from webapp.services.training.progress import fraction_of

    assert fraction_of({"epoch": 2, "epochs": 4, "batch": 5, "batches": 10}) == {"fraction": 0.375}
    assert fraction_of({"stage": "loading"}) == {}


def test_auto_activation_only_when_enabled_and_better(app_ctx):
    def version(name: str, accuracy: float) -> ModelVersion:
        row = ModelVersion(
            name=name,
            checkpoint_path=f"/nowhere/{name}.pt",
            image_size=32,
            init_weights="random",
            metrics={"test": {"accuracy": accuracy}},
        )
        db.session.add(row)
        db.session.commit()
        return row

    first = version("v1", 0.80)
    assert versions.activate_if_due(first, auto_activate_better=False)  # the first always
    worse, better = version("v2", 0.70), version("v3", 0.90)
    assert not versions.activate_if_due(better, auto_activate_better=False)  # default: no
    assert not versions.activate_if_due(worse, auto_activate_better=True)
    assert versions.activate_if_due(better, auto_activate_better=True)
    assert versions.active_version().name == "v3"
