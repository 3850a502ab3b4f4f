"""Queue benchmark: how fast the review desk serves the next item and records a decision.

Builds a throw-away instance with N images (default 100,000), their predictions from one active
model version, in SQLite (WAL), then measures p50 / p95 of the two requests a reviewer makes per
image, ``POST /api/v1/review/claim`` (next item, leased) and ``POST /api/v1/review/decisions``:

1. through the Flask test client (in process);
2. through gunicorn on loopback (a subprocess on a free 127.0.0.1 port, stopped at the end), both
   as the client sees it and as the server reports it (``Server-Timing``).

Baselines measured in the same run: a static file through the same stack (the floor of any
request), and the next item computed on the fly from all predictions (what the materialised queue
saves). Target: p95 under 25 ms on the server side. The machine may be shared: figures are noisy.

    python bench/queue_bench.py [--images 100000] [--requests 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PASSWORD = "bench password 1"
TARGET_MS = 25.0


def main() -> None:
    args = parse_args()
    instance = Path(tempfile.mkdtemp(prefix="realfake-queue-bench-"))
    os.environ["REALFAKE_INSTANCE"] = str(instance)
    os.environ.pop("REALFAKE_DATABASE_URL", None)
    os.environ["REALFAKE_LOGIN_RATE_LIMIT"] = "1000 per minute"
    try:
        run(args, instance)
    finally:
        shutil.rmtree(instance, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300, help="claim+decide pairs per path")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--no-gunicorn", action="store_true")
    return parser.parse_args()


def run(args: argparse.Namespace, instance: Path) -> None:
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db
    from webapp.services import queue

    app = create_app()
    with app.app_context():
        upgrade()
        started = time.perf_counter()
        version_id = populate(args.images)
        print(
            f"queue_bench: {args.images:,} images and predictions written in "
            f"{time.perf_counter() - started:.1f} s to {instance / 'realfake.db'} (SQLite, WAL)"
        )
        build = queue.rebuild()
        counts = queue.counts()
        print(
            f"queue build: {build.n_entries:,} entries in {build.seconds:.2f} s; "
            + ", ".join(f"{name} {number:,}" for name, number in counts.items())
        )
        naive = [timed(lambda: naive_next_item(version_id)) for _ in range(3)]
        db.session.remove()

    results = {}
    results["test client"] = bench_test_client(app, args.requests)
    if not args.no_gunicorn:
        results["gunicorn"] = bench_gunicorn(instance, args.requests, args.workers)
    report(results, naive)


# ----------------------------------------------------------------------------- data


def populate(n_images: int) -> int:
    """Users, a dataset, an active version, and ``n_images`` images with predictions."""
    import numpy as np
    from sqlalchemy import insert

    from webapp.extensions import db
    from webapp.models import Dataset, DatasetImage, Image, ModelVersion, Prediction, User

    for name in ("rita", "rob"):
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
        stop = min(start + 20_000, n_images)
        images, members, predictions = [], [], []
        for i in range(start, stop):
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


def naive_next_item(version_id: int):
    """The next item computed from all predictions at request time (no materialised queue)."""
    from sqlalchemy import case, select

    from webapp.extensions import db
    from webapp.models import Image, Prediction
    from webapp.services import queue

    s = queue.settings()
    conditions = queue._conditions(s)
    rank = case(*[(conditions[name], index) for index, name in enumerate(s.buckets)])
    key = case(*[(conditions[name], queue._SORT_KEYS[name]()) for name in s.buckets])
    statement = (
        select(Prediction.image_id)
        .join(Image, Image.id == Prediction.image_id)
        .where(Prediction.model_version_id == version_id, rank.is_not(None))
        .order_by(rank, key, Prediction.image_id)
        .limit(1)
    )
    return db.session.scalar(statement)


# ----------------------------------------------------------------------------- paths


def bench_test_client(app, pairs: int) -> dict[str, list[tuple[float, float]]]:
    """(wall ms, server ms) per request, through the in-process test client."""
    client = app.test_client()
    token = csrf_from(client.get("/auth/login").get_data(as_text=True))
    client.post("/auth/login", data={"username": "rita", "password": PASSWORD, "csrf_token": token})
    token = csrf_from(client.get("/review/").get_data(as_text=True))
    headers = {"X-CSRFToken": token}
    samples = {"next item": [], "decision": [], "static file (floor)": []}
    for index in range(pairs):
        started = time.perf_counter()
        response = client.post("/api/v1/review/claim", json={}, headers=headers)
        samples["next item"].append((ms_since(started), server_ms(response.headers)))
        item = response.get_json()["item"]
        body = {"image_id": item["image_id"], "choice": ("real", "fake")[index % 2]}
        started = time.perf_counter()
        response = client.post("/api/v1/review/decisions", json=body, headers=headers)
        samples["decision"].append((ms_since(started), server_ms(response.headers)))
        assert response.status_code == 201, response.get_data(as_text=True)
        started = time.perf_counter()
        client.get("/static/css/app.css").close()
        samples["static file (floor)"].append((ms_since(started), float("nan")))
    return samples


def bench_gunicorn(
    instance: Path, pairs: int, workers: int
) -> dict[str, list[tuple[float, float]]]:
    """The same requests to gunicorn on loopback, from a plain HTTP client."""
    port = free_port()
    env = dict(os.environ, REALFAKE_INSTANCE=str(instance))
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        "60",
        "--log-level",
        "warning",
        "wsgi:app",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        wait_for_port(port, server)
        client = HttpClient(port)
        client.login("rob")
        samples = {"next item": [], "decision": [], "static file (floor)": []}
        for index in range(pairs):
            status, data, wall, server_side = client.json("POST", "/api/v1/review/claim", {})
            samples["next item"].append((wall, server_side))
            body = {"image_id": data["item"]["image_id"], "choice": ("real", "fake")[index % 2]}
            status, data, wall, server_side = client.json("POST", "/api/v1/review/decisions", body)
            assert status == 201, data
            samples["decision"].append((wall, server_side))
            samples["static file (floor)"].append(
                (client.get_ms("/static/css/app.css"), float("nan"))
            )
        return samples
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


class HttpClient:
    """A minimal cookie-keeping HTTP/1.1 client (gunicorn's sync workers close each connection)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        started = time.perf_counter()
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        wall = ms_since(started)
        connection.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response, payload, wall

    def login(self, username: str) -> None:
        _, page, _ = self.request("GET", "/auth/login")
        form = f"username={username}&password={PASSWORD.replace(' ', '+')}"
        form += f"&csrf_token={csrf_from(page.decode())}"
        content = {"Content-Type": "application/x-www-form-urlencoded"}
        response, _, _ = self.request("POST", "/auth/login", form.encode(), content)
        assert response.status == 302, "login failed"
        _, page, _ = self.request("GET", "/review/")
        self.csrf = csrf_from(page.decode())

    def json(self, method: str, path: str, body: dict):
        import json

        headers = {"Content-Type": "application/json", "X-CSRFToken": self.csrf}
        response, payload, wall = self.request(method, path, json.dumps(body).encode(), headers)
        return response.status, json.loads(payload), wall, server_ms(response.headers)

    def get_ms(self, path: str) -> float:
        return self.request("GET", path)[2]


# ----------------------------------------------------------------------------- helpers


def report(results: dict, naive: list[float]) -> None:
    print(
        f"\n{'path':<12} {'request':<20} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'server p50':>11} {'server p95':>11}"
    )
    worst = 0.0
    for path, samples in results.items():
        for name, rows in samples.items():
            wall = [row[0] for row in rows]
            server = [row[1] for row in rows if row[1] == row[1]]
            server_text = (
                f"{percentile(server, 50):>11.2f} {percentile(server, 95):>11.2f}" if server else ""
            )
            if server:
                worst = max(worst, percentile(server, 95))
            print(
                f"{path:<12} {name:<20} {len(wall):>5} {percentile(wall, 50):>8.2f} "
                f"{percentile(wall, 95):>8.2f} {server_text}"
            )
    naive_ms = statistics.median(naive)
    claim_p50 = percentile([row[0] for row in results["test client"]["next item"]], 50)
    print(
        f"\nbaseline: next item computed on the fly from every prediction: {naive_ms:.1f} ms "
        f"(median of {len(naive)}); the materialised queue is {naive_ms / claim_p50:.0f}x faster"
    )
    floor = percentile([row[0] for row in results["test client"]["static file (floor)"]], 50)
    print(
        f"baseline: a static file through the test client: {floor:.2f} ms "
        f"(next item = {claim_p50 / floor:.1f}x that floor)"
    )
    verdict = "met" if worst < TARGET_MS else "NOT met"
    print(f"target: server-side p95 < {TARGET_MS:.0f} ms: {verdict} (worst {worst:.2f} ms)")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return ms_since(started)


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def server_ms(headers) -> float:
    match = re.search(r"dur=([\d.]+)", headers.get("Server-Timing", ""))
    return float(match.group(1)) if match else float("nan")


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf[-_]token" (?:content|value)="([^"]+)"', html)
    if not match:
        raise RuntimeError("no CSRF token on the page")
    return match.group(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
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


if __name__ == "__main__":
    main()
