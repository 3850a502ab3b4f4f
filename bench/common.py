"""What the desk benchmarks share: a seeded throw-away instance, gunicorn on a free loopback
port, a small cookie-keeping HTTP client that logs in through the real form, and percentiles.

The benchmarks import it as ``bench.common`` (they put the checkout on ``sys.path`` first).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password 1"


# ----------------------------------------------------------------------------- options


def option_values(pairs: Sequence[str]) -> dict:
    """``--option KEY=VALUE`` pairs as TrainConfig overrides: JSON values where they parse
    (numbers, booleans), else strings."""
    values = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


# ----------------------------------------------------------------------------- data


def populate(n_images: int, reviewers: Sequence[str] = ("rita", "rob")) -> int:
    """Reviewers, a dataset, an active version, and ``n_images`` images with predictions drawn
    like a real model's (mostly right and confident, some wrong, some unsure). Needs an app
    context; returns the version's id. Written in bulk, 20,000 rows a statement."""
    import numpy as np
    from sqlalchemy import insert

    from webapp.extensions import db
    from webapp.models import Dataset, DatasetImage, Image, ModelVersion, Prediction, User

    for name in reviewers:
        user = User(username=name, role="reviewer")
        user.set_password(PASSWORD)
        db.session.add(user)
    dataset = Dataset(name="bench")
    version = ModelVersion(
        name="v1", is_active=True, checkpoint_path="", image_size=32, init_weights="random"
    )
    db.session.add_all([dataset, version])
    db.session.commit()

    rng = np.random.default_rng(0)
    labelled = rng.random(n_images) < 0.9
    truth_fake = rng.random(n_images) < 0.5
    correct = rng.random(n_images) < 0.95
    confidence = rng.beta(5, 1, n_images)
    p_fake = np.where(truth_fake == correct, confidence, 1 - confidence)
    oos = np.clip(p_fake + rng.normal(0, 0.05, n_images), 0, 1)
    ood = rng.random(n_images)
    audit = rng.random(n_images)
    splits = np.array(["train", "val", "test"])[rng.integers(0, 3, n_images)]
    for start in range(0, n_images, 20_000):
        images, members, predictions = [], [], []
        for i in range(start, min(start + 20_000, n_images)):
            label = ("fake" if truth_fake[i] else "real") if labelled[i] else "unknown"
            image_id = i + 1
            images.append(
                {
                    "id": image_id,
                    "sha256": f"{image_id:064x}",
                    "dataset_id": dataset.id,
                    "file_name": f"img_{image_id:06d}.jpg",
                    "original_path": f"x/{image_id}.jpg",
                    "format": "JPEG",
                    "width": 32,
                    "height": 32,
                    "bytes": 1200,
                    "mode": "RGB",
                    "label": label,
                    "label_source": "folder name",
                    "split": splits[i],
                }
            )
            members.append(
                {
                    "dataset_id": dataset.id,
                    "image_id": image_id,
                    "original_path": "",
                    "label": label,
                }
            )
            issue = None if label == "unknown" else float(oos[i] if label == "real" else 1 - oos[i])
            predictions.append(
                {
                    "image_id": image_id,
                    "model_version_id": version.id,
                    "p_fake": float(p_fake[i]),
                    "p_fake_raw": float(p_fake[i]),
                    "verdict": "fake" if p_fake[i] >= 0.5 else "real",
                    "oos_p_fake": None if label == "unknown" else float(oos[i]),
                    "label_issue_score": issue,
                    "ood_score": float(ood[i]),
                    "audit_key": float(audit[i]),
                }
            )
        db.session.execute(insert(Image), images)
        db.session.execute(insert(DatasetImage), members)
        db.session.execute(insert(Prediction), predictions)
        db.session.commit()
    return version.id


# ----------------------------------------------------------------------------- gunicorn


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workers: int, timeout: int = 60) -> Iterator[int]:
    """gunicorn serving ``wsgi:app`` on a free 127.0.0.1 port with ``env``; yields the port and
    stops the whole process group afterwards, whatever happened."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        str(timeout),
        "--log-level",
        "warning",
        "wsgi:app",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        wait_for_port(port, server)
        yield port
    finally:
        stop_process_group(server)


def stop_process_group(process: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process and its children, SIGKILL them if they outstay ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    """Return once ``port`` accepts connections; raise if ``process`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not start listening")


# ----------------------------------------------------------------------------- HTTP


class HttpClient:
    """A minimal cookie-keeping HTTP/1.1 client (gunicorn's sync workers close each
    connection, so each request opens its own)."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.port = port
        self.timeout = timeout
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        """(response, payload, wall ms); the response's cookies are kept."""
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            started = time.perf_counter()
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            wall = ms_since(started)
        finally:
            connection.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response, payload, wall

    def login(self, username: str, password: str = PASSWORD) -> None:
        """Log in through the form (CSRF token included) and keep the desk's CSRF token."""
        _, page, _ = self.request("GET", "/auth/login")
        form = f"username={username}&password={password.replace(' ', '+')}"
        form += f"&csrf_token={csrf_from(page.decode())}"
        content = {"Content-Type": "application/x-www-form-urlencoded"}
        response, _, _ = self.request("POST", "/auth/login", form.encode(), content)
        if response.status != 302:
            raise RuntimeError(f"login as {username} failed: HTTP {response.status}")
        _, page, _ = self.request("GET", "/review/")
        self.csrf = csrf_from(page.decode())

    def json(self, method: str, path: str, body: dict | None = None):
        """(status, JSON or None, wall ms, server ms) of a JSON API request."""
        headers = {"Accept": "application/json", "X-CSRFToken": self.csrf}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        response, payload, wall = self.request(method, path, data, headers)
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = None
        return response.status, parsed, wall, server_ms(response.headers)

    def get_ms(self, path: str) -> float:
        """Wall milliseconds of a plain GET."""
        return self.request("GET", path)[2]


def csrf_from(html: str) -> str:
    """The CSRF token in a page's meta tag or hidden field."""
    match = re.search(r'name="csrf[-_]token" (?:content|value)="([^"]+)"', html)
    if not match:
        raise RuntimeError("no CSRF token on the page")
    return match.group(1)


def server_ms(headers) -> float:
    """The server's own time from a ``Server-Timing: app;dur=`` header (NaN when absent)."""
    match = re.search(r"dur=([\d.]+)", headers.get("Server-Timing", ""))
    return float(match.group(1)) if match else float("nan")


# ----------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms_since(started: float) -> float:
    """Milliseconds since a ``time.perf_counter()`` reading."""
    return (time.perf_counter() - started) * 1000
