"""The task queue's Redis mode: a real redis-server, two ``flask worker`` processes sharing jobs."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from tests.processes import flask_env, redis_queue, wait_until
from webapp.extensions import db
from webapp.jobs import submit, wait_for
from webapp.jobs.queue import huey
from webapp.models import Job, JobState

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    """A redis-server of our own on a free loopback port, data in a temp folder."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/setup_redis.sh needs root or sudo)")
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
    with open(folder / "redis.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:

        def answers() -> bool:
            if server.poll() is not None:
                raise RuntimeError((folder / "redis.log").read_text())
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_until(answers, timeout=60, what="redis-server answering")
        yield url
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=30)


def test_two_workers_share_the_jobs_and_run_each_once(
    app_ctx, redis_url, monkeypatch, worker_processes
):
    monkeypatch.setattr(huey, "storage", redis_queue(redis_url))
    env = flask_env(Path(app_ctx.instance_path), REALFAKE_REDIS_URL=redis_url)
    workers = [worker_processes(env), worker_processes(env)]
    for worker in workers:
        worker.wait_ready()
    assert all("RedisStorage" in worker.log() for worker in workers)

    jobs = [submit("sleep", {"steps": 4, "seconds": 0.25}).id for _ in range(8)]
    ended = [wait_for(job_id, timeout=300, poll=0.1) for job_id in jobs]

    assert all(job.state == JobState.SUCCEEDED for job in ended), [j.error for j in ended]
    assert all(job.attempts == 1 and job.result == {"slept_steps": 4} for job in ended)
    ran_on = {job.worker for job in ended}
    host = socket.gethostname()
    assert ran_on == {f"{host}:{worker.pid}" for worker in workers}
    db.session.expire_all()
    assert db.session.scalars(select(Job.state)).all() == [JobState.SUCCEEDED] * len(jobs)
    assert huey.storage.queue_size() == 0
