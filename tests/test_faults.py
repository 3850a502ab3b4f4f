"""Faults with real processes: ``kill -9`` a ``flask worker`` in the middle of a training, an
import and a scoring run, start a new one, and check what a user would: the job ended failed or
completed on resume, the active version did not move, and after ``doctor --repair`` a second
``doctor`` finds nothing (no orphaned rows or blobs)."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from tests.factories import make_active_version
from tests.processes import flask_env, run_flask, wait_until
from tests.services.training.test_training import write_separable_folder
from webapp.extensions import db
from webapp.jobs import submit, wait_for
from webapp.models import Image, ImportRun, Job, JobState, ModelVersion, Prediction
from webapp.services.importing.importer import import_path
from webapp.services.records import versions
from webapp.services.storage import blob_relative, extension_for

pytestmark = pytest.mark.slow


def write_noise_folder(root: Path, count: int, size: int = 96) -> None:
    """``count`` distinct noisy PNGs under real/ and fake/ (noise: no two alike, slow to pack)."""
    rng = np.random.default_rng(11)
    for index in range(count):
        folder = root / ("real" if index % 2 else "fake")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        PILImage.fromarray(pixels).save(folder / f"noise_{index:04d}.png")


def job_row(job_id: int) -> Job:
    db.session.expire_all()
    return db.session.get(Job, job_id)


def image_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(Image.id)))


def assert_doctor_repairs_then_finds_nothing(env) -> dict:
    """``doctor --repair`` leaves nothing behind: a second ``doctor`` reports no finding."""
    repair = run_flask(["doctor", "--repair", "--json"], env)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    report = json.loads(repair.stdout)
    assert report["problems_remaining"] == 0
    again = run_flask(["doctor", "--json"], env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["findings"] == []
    return report


def assert_store_matches_rows(instance: Path) -> None:
    """Every image row has its original (with its content), and every original has a row."""
    db.session.expire_all()
    rows = db.session.execute(select(Image.sha256, Image.format)).all()
    expected = {blob_relative(sha, extension_for(fmt)): sha for sha, fmt in rows}
    on_disk = {
        str(path.relative_to(instance))
        for path in (instance / "images").rglob("*")
        if path.is_file()
    }
    assert on_disk == set(expected)
    for relative, sha in expected.items():
        assert hashlib.sha256((instance / relative).read_bytes()).hexdigest() == sha


def test_training_killed_midway_ends_failed_and_the_active_version_stays(
    app_ctx, tmp_path, shared_queue, worker_processes
):
    instance = Path(app_ctx.instance_path)
    write_separable_folder(tmp_path / "src")
    import_path(tmp_path / "src", dataset="tiny", workers=1)
    active = make_active_version()
    env = flask_env(instance)
    first = worker_processes(env)
    first.wait_ready()

    job = submit("train", {"epochs": 500, "image_size": 32, "score": False})
    wait_until(lambda: (job_row(job.id).progress or {}).get("epoch"), what="training under way")
    assert job_row(job.id).worker == f"{socket.gethostname()}:{first.pid}"
    first.kill9()
    assert job_row(job.id).state == JobState.RUNNING  # nobody has noticed yet

    second = worker_processes(env)
    second.wait_ready()
    ended = wait_for(job.id, timeout=120, poll=0.1)
    assert ended.state == JobState.FAILED
    assert "worker died" in ended.error and str(first.pid) in ended.error
    assert f"job {job.id} (train)" in second.log()
    db.session.expire_all()
    assert versions.active_version().id == active.id
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 1
    assert_doctor_repairs_then_finds_nothing(env)
    assert sorted(p.name for p in versions.models_dir().iterdir()) == ["v1.pt"]


@pytest.mark.parametrize("max_attempts", [3, 1], ids=["resumed", "given-up"])
def test_import_killed_midway_resumes_or_fails_leaving_no_orphans(
    app_ctx, tmp_path, shared_queue, worker_processes, max_attempts
):
    instance = Path(app_ctx.instance_path)
    total = 300
    write_noise_folder(tmp_path / "bulk", total)
    env = flask_env(
        instance,
        REALFAKE_IMPORT_BATCH_ROWS="10",
        REALFAKE_MAX_JOB_ATTEMPTS=str(max_attempts),
    )
    first = worker_processes(env)
    first.wait_ready()

    job = submit("import", {"path": str(tmp_path / "bulk"), "dataset": "bulk"})
    wait_until(
        lambda: job_row(job.id).state == JobState.RUNNING and image_count() > 0,
        what="import under way",
    )
    first.kill9()
    rows_at_kill = image_count()
    assert 0 < rows_at_kill < total, "the import was not in progress when killed"

    second = worker_processes(env)
    second.wait_ready()
    ended = wait_for(job.id, timeout=300, poll=0.1)
    if max_attempts > 1:
        assert ended.state == JobState.SUCCEEDED, ended.error
        assert ended.attempts == 2 and "queued again" in ended.log
        assert image_count() == total
        assert ended.result["imported"] + ended.result["duplicates"] == total
    else:
        assert ended.state == JobState.FAILED
        assert "worker died" in ended.error
        assert image_count() == rows_at_kill
    report = assert_doctor_repairs_then_finds_nothing(env)
    assert_store_matches_rows(instance)
    runs = db.session.scalars(select(ImportRun).order_by(ImportRun.id)).all()
    assert runs[0].state == "interrupted"
    if max_attempts == 1:
        assert any(f["check"] == "stuck-import" for f in report["findings"])


def make_active_version_at(size: int) -> ModelVersion:
    """An active version (untrained network) that scores at ``size`` px."""
    from model.checkpoint import save_checkpoint
    from model.network import build_model

    version = make_active_version()
    network, init = build_model(init="random")
    meta = {"stem": "imagenet", "image_size": size, "mean": [0.5] * 3, "std": [0.25] * 3}
    save_checkpoint(Path(version.checkpoint_path), network, {**meta, "init_weights": init})
    version.image_size = size
    db.session.commit()
    return version


def test_scoring_killed_midway_is_queued_again_and_scores_every_image_once(
    app_ctx, tmp_path, shared_queue, worker_processes
):
    instance = Path(app_ctx.instance_path)
    total = 240
    write_noise_folder(tmp_path / "bulk", total)
    import_path(tmp_path / "bulk", dataset="bulk", workers=1)
    version = make_active_version_at(96)
    env = flask_env(instance, REALFAKE_SCORE_BATCH="16")
    first = worker_processes(env)
    first.wait_ready()

    job = submit("predict", {"version": version.name})

    def under_way_or_ended() -> Job | None:
        row = job_row(job.id)
        done = (row.progress or {}).get("done") or 0
        return row if row.state not in (JobState.QUEUED, JobState.RUNNING) or done > 0 else None

    row = wait_until(under_way_or_ended, timeout=120, what="scoring under way")
    assert row.state == JobState.RUNNING, (row.state, row.error, row.progress, row.log)
    assert row.progress["done"] < total, "the network pass ended before it could be interrupted"
    first.kill9()
    assert db.session.scalar(select(func.count(Prediction.id))) == 0  # written at the end

    second = worker_processes(env)
    second.wait_ready()
    ended = wait_for(job.id, timeout=300, poll=0.1)
    assert ended.state == JobState.SUCCEEDED, ended.error
    assert ended.attempts == 2 and "queued again" in ended.log
    assert ended.result["scored"] == total and ended.result["already_scored"] == 0
    per_image = db.session.execute(
        select(Prediction.image_id, func.count(Prediction.id)).group_by(Prediction.image_id)
    ).all()
    assert len(per_image) == total and {count for _, count in per_image} == {1}
    assert_doctor_repairs_then_finds_nothing(env)
