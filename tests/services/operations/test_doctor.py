"""``flask doctor``: each kind of damage is found, repaired when that is safe, and reported."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from datetime import timedelta

import pytest

from tests.factories import make_image, make_version
from tests.helpers import make_image_bytes, make_user
from webapp.extensions import db
from webapp.jobs.core import worker_identity
from webapp.models import DatasetImage, ImportRun, Job, JobState, Lease, utcnow
from webapp.services.records import versions
from webapp.services.storage import blob_relative, original_path, thumbnail_path, thumbnail_relative


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def doctor(runner, *flags):
    result = runner.invoke(args=["doctor", "--json", *flags])
    return result.exit_code, json.loads(result.output)


def checks(report) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for finding in report["findings"]:
        found.setdefault(finding["check"], []).append(finding)
    return found


def write_orphan(root, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    for relative in (blob_relative(sha, "jpg"), thumbnail_relative(sha)):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return sha


def test_a_healthy_instance_has_no_findings(app_ctx, runner):
    make_image()
    code, report = doctor(runner)
    assert code == 0 and report["findings"] == []


def test_repair_clears_what_dead_writers_left(app_ctx, runner, tmp_path):
    root = tmp_path / "instance"
    kept = make_image()
    orphan = write_orphan(root, make_image_bytes(seed=999))
    (root / "tmp").mkdir(exist_ok=True)
    (root / "tmp" / f"{dead_pid()}-1.part").write_bytes(b"half")
    models = versions.models_dir()
    (models / "v7.pt").write_bytes(b"checkpoint of a training killed before its row")
    (models / "v7.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    job = Job(kind="train", state=JobState.RUNNING, worker=f"{socket.gethostname()}:{dead_pid()}")
    user = make_user("reviewer1")
    db.session.add_all([job, Lease(image_id=kept.id, user_id=user.id, expires_at=utcnow())])
    run = ImportRun(
        dataset_id=kept.dataset_id,
        source="x",
        report={"host": socket.gethostname(), "pid": dead_pid()},
    )
    db.session.add(run)
    db.session.commit()

    code, report = doctor(runner)
    found = checks(report)
    assert code == 1
    assert {f["subject"] for f in found["orphaned-blob"]} == {
        blob_relative(orphan, "jpg"),
        thumbnail_relative(orphan),
    }
    assert len(found["temporary-file"]) == 1
    assert {f["subject"] for f in found["orphaned-checkpoint"]} == {
        "models/v7.pt",
        "models/v7.pt.abc123.tmp",
    }
    assert "left running" in found["abandoned-job"][0]["message"]
    assert found["stuck-import"][0]["subject"] == f"import run {run.id}"
    assert found["expired-lease"][0]["problem"] is False
    assert not any(f["repaired"] for f in report["findings"])

    code, repaired = doctor(runner, "--repair")
    assert code == 0, repaired
    assert all(f["repaired"] for f in repaired["findings"])
    assert not (root / blob_relative(orphan, "jpg")).exists()
    assert original_path(kept).exists() and thumbnail_path(kept.sha256).exists()
    assert not (models / "v7.pt").exists()
    db.session.expire_all()
    assert db.session.get(Job, job.id).state == JobState.FAILED
    assert "worker died" in db.session.get(Job, job.id).error
    assert db.session.get(ImportRun, run.id).state == "interrupted"
    assert db.session.query(Lease).count() == 0
    code, report = doctor(runner)
    assert (code, report["findings"], report["problems_remaining"]) == (0, [], 0)


def test_orphans_are_left_alone_while_an_import_may_adopt_them(app_ctx, runner, tmp_path):
    orphan = write_orphan(tmp_path / "instance", make_image_bytes(seed=998))
    db.session.add(Job(kind="import", state=JobState.RUNNING, worker=worker_identity()))
    db.session.commit()
    code, report = doctor(runner, "--repair")
    assert code == 1
    blobs = checks(report)["orphaned-blob"]
    assert all(not f["repaired"] and "left alone" in f["message"] for f in blobs)
    assert (tmp_path / "instance" / blob_relative(orphan, "jpg")).exists()


def test_missing_files_are_restored_from_a_verified_copy_or_reported(app_ctx, runner, tmp_path):
    source = tmp_path / "source"
    copied, lost, thumbless = make_image(), make_image(), make_image()
    (source / "REAL").mkdir(parents=True)
    (source / "REAL" / "copy.jpg").write_bytes(original_path(copied).read_bytes())
    run = ImportRun(dataset_id=copied.dataset_id, source=str(source), state="succeeded")
    db.session.add(run)
    db.session.flush()
    link = db.session.query(DatasetImage).filter_by(image_id=copied.id).one()
    link.import_id, link.original_path = run.id, "REAL/copy.jpg"
    db.session.commit()
    original_path(copied).unlink()
    original_path(lost).unlink()
    os.unlink(thumbnail_path(thumbless.sha256))

    code, report = doctor(runner, "--repair")
    found = checks(report)
    assert code == 1  # the lost original cannot come back
    by_subject = {f["subject"]: f for f in found["missing-blob"]}
    assert by_subject[f"image {copied.id}"]["repaired"]
    assert not by_subject[f"image {lost.id}"]["repaired"]
    assert "no copy" in by_subject[f"image {lost.id}"]["message"]
    assert found["missing-thumbnail"][0]["repaired"]
    data = original_path(copied).read_bytes()
    assert hashlib.sha256(data).hexdigest() == copied.sha256
    assert thumbnail_path(thumbless.sha256).stat().st_size > 0


@pytest.mark.parametrize("active", [True, False])
def test_a_missing_checkpoint_is_reported_never_deleted(app_ctx, runner, active):
    version = make_version("v1", active=active)
    version.checkpoint_path = "/nowhere/v1.pt"
    db.session.commit()
    code, report = doctor(runner, "--repair")
    finding = checks(report)["missing-checkpoint"][0]
    assert code == 1 and not finding["repaired"]
    assert ("ACTIVE" in finding["message"]) == active
    assert versions.get_version("v1").id == version.id


def test_a_moved_checkpoint_is_found_in_this_instance(app_ctx, runner):
    version = make_version("v1")
    version.checkpoint_path = "/old/instance/models/v1.pt"
    db.session.commit()
    (versions.models_dir() / "v1.pt").write_bytes(b"weights")
    code, report = doctor(runner, "--repair")
    assert code == 0 and checks(report)["missing-checkpoint"][0]["repaired"]
    db.session.expire_all()
    assert versions.get_version("v1").checkpoint_path == str(versions.models_dir() / "v1.pt")


def test_a_silent_heartbeat_from_another_host_counts_as_dead(app_ctx, runner):
    stale = utcnow() - timedelta(hours=1)
    db.session.add_all(
        [
            Job(kind="import", state=JobState.RUNNING, worker="elsewhere:1", heartbeat_at=stale),
            Job(kind="import", state=JobState.RUNNING, worker="elsewhere:2", heartbeat_at=utcnow()),
        ]
    )
    db.session.commit()
    code, report = doctor(runner)
    abandoned = checks(report)["abandoned-job"]
    assert [f["message"].split(" left")[0] for f in abandoned] == ["import"]
    assert "elsewhere:1" in abandoned[0]["message"] and "no heartbeat" in abandoned[0]["message"]


def test_doctor_reports_the_running_workers_and_the_measured_engines(app_ctx, runner):
    """Facts beside the findings: which workers run with which threads, what was measured."""
    from webapp.jobs import presence
    from webapp.services.training import engines

    code, report = doctor(runner)
    assert code == 0 and report["workers"] == [] and report["engines"] == {}
    text = runner.invoke(args=["doctor"]).output
    assert "no job worker is running" in text
    identity = f"{socket.gethostname()}:{os.getpid()}"
    presence.register(identity, "2 threads (2 of 2 cores usable), OpenMP wait policy PASSIVE")
    entry = {
        "engine": "compile",
        "precision": "bf16",
        "batch_size": 16,
        "images_per_second": 400.0,
        "speedup": 8.0,
        "fingerprint": {"processor": "Test CPU"},
    }
    engines.tuning_file().write_text(json.dumps({"inference:cpu:224": entry}))
    code, report = doctor(runner)
    assert code == 0 and report["findings"] == []
    assert [w["identity"] for w in report["workers"]] == [identity]
    assert "wait policy PASSIVE" in report["workers"][0]["settings"]
    assert report["engines"]["inference:cpu:224"].startswith("compile bf16 batch 16")
    text = runner.invoke(args=["doctor"]).output
    assert f"[info] worker {identity}: 2 threads" in text and "8.00x eager fp32" in text
