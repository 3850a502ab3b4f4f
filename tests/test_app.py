"""The factory, configuration, error pages and the job machinery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from webapp.extensions import db
from webapp.jobs import cancel, submit, wait_for
from webapp.models import JobState

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.sqlite_only(reason="the default database is a file in the instance folder")
def test_instance_folder_holds_database(app):
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert app.config["INSTANCE_PATH"] in app.config["SQLALCHEMY_DATABASE_URI"]


@pytest.mark.sqlite_only(reason="WAL and busy_timeout are SQLite pragmas")
def test_sqlite_uses_wal_and_busy_timeout(app_ctx):
    assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert db.session.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_unknown_page_is_404_html_and_json(client):
    assert client.get("/nowhere").status_code == 404
    response = client.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert response.get_json()["status"] == 404


def test_anonymous_is_sent_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]


def test_login_requires_csrf(client, app):
    from tests.helpers import make_user

    with app.app_context():
        make_user("ann")
    response = client.post("/auth/login", data={"username": "ann", "password": "x"})
    assert response.status_code == 400


def test_login_and_logout(auth, client):
    assert auth.login("reviewer").status_code == 302
    assert client.get("/").status_code in (200, 302)
    auth.logout()
    assert client.get("/").status_code == 302


def test_wrong_password_rejected(auth, client, app):
    auth.login("reviewer")
    auth.logout()
    from tests.helpers import login

    assert login(client, "reviewer1", "wrong password").status_code == 401


def test_job_runs_on_real_worker(app_ctx, worker):
    job = submit("sleep", {"steps": 3, "seconds": 0.01})
    done = wait_for(job.id, timeout=30, poll=0.05)
    assert done.state == JobState.SUCCEEDED
    assert done.result == {"slept_steps": 3}
    assert done.progress["fraction"] == 1.0


def test_failing_job_records_error(app_ctx, worker):
    job = submit("fail", {"message": "boom here"})
    done = wait_for(job.id, timeout=30, poll=0.05)
    assert done.state == JobState.FAILED
    assert "boom here" in done.error
    assert "about to fail" in done.log


def test_running_job_can_be_cancelled(app_ctx, worker):
    job = submit("sleep", {"steps": 200, "seconds": 0.05})
    wait_until_running(job.id)
    cancel(db.session.get(type(job), job.id))
    assert wait_for(job.id, timeout=30, poll=0.05).state == JobState.CANCELLED


def wait_until_running(job_id: int) -> None:
    import time

    from webapp.models import Job

    for _ in range(400):
        db.session.expire_all()
        if db.session.get(Job, job_id).state == JobState.RUNNING:
            return
        time.sleep(0.025)
    raise AssertionError("job never started")


def test_unknown_job_kind_is_refused(app_ctx):
    with pytest.raises(ValueError, match="unknown job kind 'nope'"):
        submit("nope")


def test_web_app_and_cli_start_without_pytorch(tmp_path):
    """Only jobs load PyTorch and scikit-learn (see webapp.jobs.registry): the web server's
    processes and commands such as ``flask data import`` start in a second or two and stay small."""
    code = (
        "import sys, wsgi\n"
        "from webapp.cli import data, model\n"
        "wsgi.app.test_client().get('/auth/login')\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', "
        "'sklearn', 'scipy'})\n"
        "print(','.join(heavy) or 'none')\n"
    )
    env = dict(os.environ, REALFAKE_INSTANCE=str(tmp_path / "instance"))
    env.pop("REALFAKE_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "none"
