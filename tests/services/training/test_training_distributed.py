"""Training with ``--nproc``: the job runs real torchrun (gloo, CPU processes) and registers the
checkpoint as a version; exporting a training set and registering an outside checkpoint."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import func, select

from model.checkpoint import load_checkpoint
from model.distributed import ERROR_PREFIX, error_file
from model.distributed import main as train_from_folder
from tests.services.training.test_training import override_labels, write_separable_folder
from webapp.extensions import db
from webapp.jobs import cancel, submit, wait_for
from webapp.models import Image, Job, JobState, ModelVersion, Prediction
from webapp.services.importing.importer import import_path
from webapp.services.records import versions
from webapp.services.training.distributed import Torchrun
from webapp.services.training.trainset import labels_changed_since, select_training_set

TINY = {"epochs": 1, "image_size": 32}


@pytest.fixture
def tiny_dataset(app_ctx, tmp_path):
    """48 labelled images on the CPU (one GPU could not host two NCCL ranks)."""
    app_ctx.config["MODEL_DEVICE"] = "cpu"
    write_separable_folder(tmp_path / "src")
    report = import_path(tmp_path / "src", dataset="tiny", workers=1)
    assert report.as_json()["imported"] == 48
    return "tiny"


def export_folder(app) -> Path:
    return Path(app.instance_path) / "distributed"


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped has stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in {"Z", "X"}


def wait_for_progress(job_id: int, key: str, timeout: float = 300) -> Job:
    """Poll the job row until its progress has ``key`` (or the job ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        job = db.session.get(Job, job_id)
        if key in (job.progress or {}) or job.is_finished:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} never reported {key!r}")


@pytest.mark.slow
def test_nproc_2_registers_a_version_like_single_process_training(
    tiny_dataset, worker, runner, app
):
    result = runner.invoke(args=["model", "train", "--nproc", "2", "--wait", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "trained v1" in result.output and "scored 48 images with v1" in result.output
    job = db.session.scalar(select(Job).where(Job.kind == "train"))
    assert job.params["nproc"] == 2
    assert {"epoch", "images_per_s", "eta_s", "fraction"} <= set(job.progress)
    assert job.progress["processes"] == 2 and len(job.progress["pids"]["ranks"]) == 2
    assert not export_folder(app).joinpath(f"job-{job.id}").exists()
    distributed = versions.get_version("v1")
    assert distributed.is_active and distributed.job_id == job.id
    predictions = db.session.scalars(
        select(Prediction).where(Prediction.model_version_id == distributed.id)
    ).all()
    assert len(predictions) == db.session.scalar(select(func.count(Image.id)))
    assert all(0.0 <= p.p_fake <= 1.0 for p in predictions)

    single_job = wait_for(submit("train", {**TINY, "score": False}).id, timeout=600, poll=0.2)
    assert single_job.state == JobState.SUCCEEDED, single_job.error
    single = versions.get_version(single_job.result["version"])
    _, meta = load_checkpoint(distributed.checkpoint_path)
    _, single_meta = load_checkpoint(single.checkpoint_path)
    assert set(meta) == set(single_meta) and meta["version"] == "v1"
    assert meta["policy"].endswith("ddp x2 gloo") and "ddp" not in single_meta["policy"]
    assert meta["train_args"] == single_meta["train_args"]
    assert distributed.train_set_sha256 == single.train_set_sha256
    assert distributed.n_train == single.n_train and distributed.image_size == 32
    assert set(distributed.metrics) == set(single.metrics) == {"val", "test"}
    saved = versions.training_labels(distributed)
    assert saved["train_ids"].tolist() == versions.training_labels(single)["train_ids"].tolist()


@pytest.mark.slow
def test_cancel_stops_torchrun_and_every_rank(tiny_dataset, worker, app):
    job = submit("train", {"nproc": 2, "epochs": 500, "image_size": 32, "score": False})
    running = wait_for_progress(job.id, "epoch")
    assert running.state == JobState.RUNNING, running.error
    pids = running.progress["pids"]
    assert alive(pids["torchrun"]) and all(alive(pid) for pid in pids["ranks"])
    cancel(running)
    ended = wait_for(job.id, timeout=300, poll=0.2)
    assert ended.state == JobState.CANCELLED
    for pid in [pids["torchrun"], *pids["ranks"]]:
        assert not alive(pid), f"process {pid} outlived the cancelled job"
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 0
    assert not export_folder(app).joinpath(f"job-{job.id}").exists()


@pytest.mark.slow
def test_a_failing_rank_fails_the_job_with_its_error(tiny_dataset, worker, app, tmp_path):
    broken = tmp_path / "resnet18-weights.pth"
    broken.write_bytes(b"these are not weights")
    app.config["IMAGENET_WEIGHTS"] = str(broken)
    job = wait_for(submit("train", {**TINY, "nproc": 2}).id, timeout=600, poll=0.2)
    assert job.state == JobState.FAILED
    last_line = job.error.strip().splitlines()[-1]
    assert "rank" in last_line and "failed" in last_line, job.error
    assert f"cannot read ImageNet weights from {broken}" in last_line
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 0
    assert not export_folder(app).joinpath(f"job-{job.id}").exists()


def test_a_batch_that_does_not_split_is_refused_before_anything_runs(tiny_dataset, worker):
    job = wait_for(submit("train", {**TINY, "nproc": 3}).id, timeout=300, poll=0.2)
    assert job.state == JobState.FAILED
    assert "does not split evenly over 3 processes" in job.error
    assert "pids" not in (job.progress or {})


def test_head_only_with_nproc_is_a_usage_error(app_ctx, runner):
    result = runner.invoke(args=["model", "train", "--head-only", "--nproc", "2"])
    assert result.exit_code == 2 and "--head-only" in result.output
    assert db.session.scalar(select(func.count(Job.id))) == 0


@pytest.mark.slow
def test_export_train_elsewhere_and_register(tiny_dataset, runner, tmp_path):
    folder = tmp_path / "export"
    exported = runner.invoke(args=["model", "export-trainset", str(folder), "--epochs", "1"])
    assert exported.exit_code == 0, exported.output
    assert "--rdzv-endpoint" in exported.output
    trainset = select_training_set(None)
    assert np.load(folder / "train_ids.npy").tolist() == trainset.train.ids
    assert runner.invoke(args=["model", "export-trainset", str(folder)]).exit_code == 1

    train_from_folder(["--data", str(folder), "--out", str(tmp_path / "outside.pt")])
    changed = override_labels(trainset.train.ids[:1])  # the desk's labels move on meanwhile
    refused = runner.invoke(args=["model", "register", str(tmp_path / "outside.pt")])
    assert refused.exit_code == 1 and "pass --trainset" in refused.output
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 0

    args = ["model", "register", str(tmp_path / "outside.pt"), "--trainset", str(folder)]
    registered = runner.invoke(args=[*args, "--no-score"])
    assert registered.exit_code == 0, registered.output
    version = versions.get_version("v1")
    assert version.job_id is None and version.n_train == len(trainset.train)
    assert version.train_set_sha256 == trainset.sha256()
    assert labels_changed_since(version)["changed"] == len(changed)
    assert load_checkpoint(version.checkpoint_path)[1]["version"] == "v1"


def test_register_refuses_what_is_not_a_checkpoint(app_ctx, runner, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    result = runner.invoke(args=["model", "register", str(tmp_path / "junk.pt")])
    assert result.exit_code == 1 and "cannot read checkpoint" in result.output
    assert db.session.scalar(select(func.count(ModelVersion.id))) == 0


def test_rank_reports_are_found_in_torn_lines_and_in_their_files(tmp_path):
    """Ranks and torchrun share one stderr pipe: a C++ warning still being written can precede
    a rank's report on the same line; and when no line survives, the rank's file tells."""
    context = SimpleNamespace(progress=lambda **values: None)
    launcher = Torchrun(tmp_path, 2, context)
    report = {"rank": 1, "error": "WeightsError: broken"}
    torn = "[W1126 08:00:00 ProcessGroupGloo.cpp] Warn" + ERROR_PREFIX + json.dumps(report) + "\n"
    launcher.process = SimpleNamespace(stderr=io.StringIO("starting\n" + torn + "=====\n"))
    launcher._read_stderr()
    assert launcher._failure(1) == "rank 1 failed: WeightsError: broken"

    launcher = Torchrun(tmp_path, 2, context)
    launcher.process = SimpleNamespace(stderr=io.StringIO("REALFAKE-ERR\nOR {torn\n=====\n"))
    launcher._read_stderr()
    assert launcher._failure(1).startswith("torchrun exited with status 1:\n")
    error_file(launcher.checkpoint, 1).write_text(json.dumps(report))
    assert launcher._failure(1) == "rank 1 failed: WeightsError: broken"
