"""The measured engine choice in the app, the worker's threads and presence, and ``--wait``.

The suite runs with tuning off (TestConfig, and REALFAKE_ENGINE_TUNING=off for the processes it
starts); these tests turn it on where they test it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from model.checkpoint import save_checkpoint
from model.threads import configure_threads
from model.tuning import random_network
from tests.processes import FLASK, PROJECT_ROOT, flask_env
from webapp.cli.jobwait import counted
from webapp.extensions import db
from webapp.jobs import presence
from webapp.models import WorkerPresence, utcnow
from webapp.services.training import engines, scoring


def write_checkpoint(path: Path, size: int = 32) -> Path:
    """A random-weight ResNet18 checkpoint at ``size`` px (speed does not need training)."""
    model, meta = random_network(size)
    save_checkpoint(path, model, meta)
    return path


def test_with_tuning_off_scoring_runs_the_fused_network_in_fp32(app_ctx, tmp_path):
    predictor = scoring.tuned_predictor(write_checkpoint(tmp_path / "v.pt"))
    assert (predictor.engine, predictor.precision) == ("fused", "fp32")
    assert not engines.tuning_file().exists()


@pytest.mark.slow
def test_model_tune_stores_the_choice_that_scoring_then_reuses(app, runner, tmp_path, monkeypatch):
    app.config["ENGINE_TUNING"] = "quick"
    result = runner.invoke(args=["model", "tune", "--image-size", "32", "--no-compile", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for key in ("engine", "precision", "batch_size", "images_per_second"):
        assert report[key]
    assert report["baseline_images_per_second"] > 0 and report["compile_seconds"] == 0
    assert report["engine"] in {"eager", "fused", "jit"} and report["image_size"] == 32
    assert {m["engine"] for m in report["measurements"]} == {"fused", "jit"}
    stored = json.loads(engines.tuning_file().read_text())
    assert stored["inference:cpu:32"]["engine"] == report["engine"]

    def no_second_measurement(*args, **kwargs):
        raise AssertionError("the stored choice should have been reused")

    monkeypatch.setattr(engines, "tune", no_second_measurement)
    with app.app_context():
        predictor = scoring.tuned_predictor(write_checkpoint(tmp_path / "v.pt"))
    chosen = (predictor.engine, predictor.precision, predictor.batch_size)
    assert chosen == (report["engine"], report["precision"], report["batch_size"])


def test_a_choice_measured_on_another_machine_is_measured_again(app_ctx, tmp_path):
    app_ctx.config["ENGINE_TUNING"] = "quick"
    import torch

    device = torch.device("cpu")
    entry = {
        "device": "cpu",
        "image_size": 32,
        "engine": "jit",
        "precision": "bf16",
        "batch_size": 64,
        "images_per_second": 1.0,
        "baseline_images_per_second": 1.0,
        "seconds": 1.0,
        "fingerprint": {"processor": "another CPU", "flags": [], "threads": 64},
        "measurements": [],
    }
    engines.tuning_file().write_text(json.dumps({"inference:cpu:32": entry}))
    assert engines.stored_choice(device, 32) is None
    entry["fingerprint"] = engines.machine_fingerprint(device)
    engines.tuning_file().write_text(json.dumps({"inference:cpu:32": entry}))
    assert engines.stored_choice(device, 32).engine == "jit"


def test_an_unknown_tuning_mode_is_refused_with_the_choices(app_ctx):
    app_ctx.config["ENGINE_TUNING"] = "fastest"
    with pytest.raises(ValueError, match="auto, quick, off"):
        engines.mode()


def test_training_precision_is_measured_once_and_logged(app_ctx, monkeypatch):
    from webapp.services.training.training import measured_precision, train_config_from

    config = train_config_from({"image_size": 32, "epochs": 1, "preset": "demo"})
    assert config.precision == "auto"
    assert measured_precision(config).precision == "fp32"  # tuning off: fp32

    app_ctx.config["ENGINE_TUNING"] = "quick"
    lines: list[str] = []
    resolved = measured_precision(config, lines.append)
    assert resolved.precision in {"fp32", "bf16"}
    assert lines[-1].startswith(f"training precision {resolved.precision}")
    assert any(line.startswith("training 32px") for line in lines[:-1])  # each variant
    stored = json.loads(engines.tuning_file().read_text())
    assert stored[f"training:cpu:32:bs{config.batch_size}"]["precision"] == resolved.precision
    monkeypatch.setattr(engines, "tune_training", lambda *a, **k: pytest.fail("measured twice"))
    assert measured_precision(config).precision == resolved.precision
    explicit = measured_precision(type(config)(**{**config.to_dict(), "precision": "bf16"}))
    assert explicit.precision == "bf16"


def test_a_training_choice_of_an_older_method_is_measured_again(app_ctx, monkeypatch):
    import torch

    from model.tuning import TRAINING_METHOD

    assert engines.TRAINING_METHOD == TRAINING_METHOD
    app_ctx.config["ENGINE_TUNING"] = "quick"
    first = engines.training_choice(torch.device("cpu"), 32, 4)
    assert first["method"] == TRAINING_METHOD
    stored = json.loads(engines.tuning_file().read_text())
    old = {**stored["training:cpu:32:bs4"], "method": None, "precision": "old"}
    engines.tuning_file().write_text(json.dumps({**stored, "training:cpu:32:bs4": old}))
    again = engines.training_choice(torch.device("cpu"), 32, 4)
    assert again["precision"] in {"fp32", "bf16"} and again["method"] == TRAINING_METHOD


def test_each_stem_and_residual_input_is_measured_and_kept_apart(app_ctx):
    from webapp.services.training.engines import measured_precision
    from webapp.services.training.training import train_config_from

    app_ctx.config["ENGINE_TUNING"] = "quick"
    usual = train_config_from({"image_size": 32, "epochs": 1, "preset": "demo"})
    medium = type(usual)(**{**usual.to_dict(), "stem": "medium", "residual": "npr"})
    lines: list[str] = []
    measured_precision(usual, lines.append)
    measured_precision(medium, lines.append)
    stored = json.loads(engines.tuning_file().read_text())
    batch = usual.batch_size
    assert set(stored) == {
        f"training:cpu:32:bs{batch}",  # the key older instances stored, kept for the usual stem
        f"training:cpu:32:bs{batch}:stem-medium:residual-npr",
    }
    kept = stored[f"training:cpu:32:bs{batch}:stem-medium:residual-npr"]
    assert (kept["stem"], kept["residual"]) == ("medium", "npr")
    assert stored[f"training:cpu:32:bs{batch}"]["stem"] == "imagenet"
    assert lines[-1].startswith("training precision ")
    assert f"batch {batch} stem medium residual npr:" in lines[-1]
    assert f"batch {batch}:" in next(line for line in lines if line.startswith("training prec"))


def test_threads_follow_the_cpu_affinity_and_openmp_sleeps(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("REALFAKE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    import torch

    before = torch.get_num_threads()
    try:
        settings = configure_threads()
        assert settings["threads"] == len(os.sched_getaffinity(0)) == torch.get_num_threads()
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        assert settings["wait_policy_applies"] is False  # torch is loaded in this process
        monkeypatch.setenv("REALFAKE_THREADS", "1")
        assert configure_threads()["threads"] == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        ({"epoch": 2, "epochs": 3, "batch": 5, "batches": 10, "fraction": 0.5}, (15, 30, "step")),
        ({"stage": "network", "done": 64, "total": 256, "fraction": 0.25}, (64, 256, None)),
        ({"stage": "out-of-sample"}, None),
    ],
)
def test_progress_bars_count_steps_or_images(progress, expected):
    assert counted(progress) == expected


def test_running_workers_are_live_processes_here_or_fresh_rows_elsewhere(app_ctx):
    here = socket.gethostname()
    dead = subprocess.Popen(["true"])
    dead.wait()
    presence.register(f"{here}:{os.getpid()}")
    presence.register(f"{here}:{dead.pid}")
    presence.register("elsewhere:123")
    stale = WorkerPresence(identity="elsewhere:456", seen_at=utcnow() - timedelta(hours=1))
    db.session.add(stale)
    db.session.commit()
    alive = {row.identity for row in presence.running_workers()}
    assert alive == {f"{here}:{os.getpid()}", "elsewhere:123"}
    presence.unregister(f"{here}:{os.getpid()}")
    assert f"{here}:{os.getpid()}" not in {row.identity for row in presence.running_workers()}


def read_until(path: Path, text: str, process: subprocess.Popen, timeout: float = 90) -> str:
    """The file a process writes to, once it holds ``text`` (or the process ended, or the
    timeout passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = path.read_text(errors="replace")
        if text in seen or process.poll() is not None:
            return seen
        time.sleep(0.2)
    return path.read_text(errors="replace")


def test_wait_says_when_no_worker_runs_the_queued_job(app_ctx, shared_queue, tmp_path):
    env = flask_env(Path(app_ctx.instance_path))
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            FLASK + ["model", "train", "--wait", "--no-score"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            seen = read_until(tmp_path / "stderr.txt", "no job worker is running", process)
        finally:
            process.kill()
            process.wait(timeout=30)
    assert "is queued but no job worker is running" in seen, seen
    assert "flask --app wsgi worker" in seen


@pytest.mark.slow
def test_with_a_worker_running_wait_shows_the_job_and_no_warning(
    app_ctx, shared_queue, worker_processes
):
    env = flask_env(Path(app_ctx.instance_path))
    worker = worker_processes(env)
    worker.wait_ready()
    assert "OpenMP wait policy PASSIVE" in worker.log()
    assert f":{worker.pid}" in {row.identity[-len(f":{worker.pid}") :] for row in _rows()}
    finished = subprocess.run(
        FLASK + ["model", "train", "--wait", "--no-score"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # No labelled images: the worker runs the job, which fails with the reason.
    assert finished.returncode == 1
    assert "needs labelled images" in finished.stderr
    assert "no job worker is running" not in finished.stderr
    worker.stop()
    assert not [row for row in _rows() if row.identity.endswith(f":{worker.pid}")]


def _rows() -> list[WorkerPresence]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(WorkerPresence)))


@pytest.mark.slow
def test_a_training_job_says_when_it_measures_the_scoring_engines(app_ctx, tmp_path, worker):
    """The first version at a size on a machine measures the engines while it is registered
    (its threshold is fitted in the engine that will score): minutes with compiled engines, so
    the job's log says so instead of going quiet."""
    from tests.services.training.test_training import train_and_wait, write_separable_folder
    from webapp.services.importing.importer import import_path

    write_separable_folder(tmp_path / "src")
    assert import_path(tmp_path / "src", dataset="tiny", workers=1).as_json()["imported"] == 48
    app_ctx.config["ENGINE_TUNING"] = "quick"
    job = train_and_wait()
    assert job.state == "succeeded", job.error
    measuring = "measuring this machine's scoring engines at 32 px (once per machine and size)"
    log = job.log.splitlines()
    at = next(i for i, line in enumerate(log) if line.endswith(measuring))
    assert "eager fp32 (baseline)" in log[at + 1]
    assert any("FAKE threshold" in line for line in log[at + 1 :])
    heard: list[str] = []
    scoring.tuned_predictor(write_checkpoint(tmp_path / "v.pt"), log=heard.append)
    assert not any("measuring" in line for line in heard)  # stored now: measured once
