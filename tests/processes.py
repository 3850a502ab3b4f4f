"""Real ``flask --app wsgi ...`` processes for the tests: job workers that can be killed with
SIGKILL, one-shot commands, and pointing this process's task queue at their storage.

Every worker runs in its own process group (so SIGKILL reaches the import pool too) and is
stopped by the fixture that started it; waits are bounded so a hung process fails the test
instead of hanging it, and no test asserts on how long anything took.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from huey.storage import RedisStorage, SqliteStorage

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]
# The worker processes run with Config (not TestConfig): give them the test sizes.
SMALL = {
    "REALFAKE_CACHE_SIZE": "32",
    "REALFAKE_IMAGE_SIZE": "32",
    "REALFAKE_IMPORT_WORKERS": "1",
    "REALFAKE_DEVICE": "cpu",
    "REALFAKE_KFOLD": "3",
}


def flask_env(instance: Path, **extra: str) -> dict[str, str]:
    """The environment of a flask process on ``instance``."""
    env = {**os.environ, **SMALL, "REALFAKE_INSTANCE": str(instance)}
    env.pop("REALFAKE_REDIS_URL", None)
    env.update(extra)
    return env


def run_flask(args: list[str], env: dict[str, str], timeout: float = 300):
    """Run one flask command to completion; returns the CompletedProcess (text output)."""
    return subprocess.run(
        FLASK + args,
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class WorkerProcess:
    """``flask --app wsgi worker`` in its own process group, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "a")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            FLASK + ["worker"],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the consumer announced itself (its recovery pass is done by then)."""
        deadline = time.monotonic() + timeout
        marker = f":{self.pid}: "
        while marker not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not ready:\n{self.log()}")
            time.sleep(0.1)

    def kill9(self) -> None:
        """SIGKILL the whole process group, as a crash or the OOM killer would."""
        os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) if it still runs; reap it."""
        if self.process is None or self.process.returncode is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            self.process.wait(timeout=30)
        finally:
            self._log.close()


def sqlite_queue(instance: Path) -> SqliteStorage:
    """The Huey storage a worker on ``instance`` reads (see webapp.jobs.queue.storage_settings)."""
    return SqliteStorage("realfake", filename=str(instance / "huey.db"), timeout=30)


def redis_queue(url: str) -> RedisStorage:
    """The Huey storage workers with ``REALFAKE_REDIS_URL=url`` read."""
    return RedisStorage("realfake", url=url)


def wait_until(condition, timeout: float = 300, poll: float = 0.05, what: str = "condition"):
    """Poll ``condition`` until it returns something true; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached")
        time.sleep(poll)
