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
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402  (after the checkout is on the path)
    PASSWORD,
    HttpClient,
    csrf_from,
    gunicorn,
    ms_since,
    percentile,
    populate,
    server_ms,
)

TARGET_MS = 25.0


def main() -> None:
    args = parse_args()
    instance = Path(tempfile.mkdtemp(prefix="realfake-queue-bench-"))
    os.environ["REALFAKE_INSTANCE"] = str(instance)
    os.environ.pop("REALFAKE_DATABASE_URL", None)
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
    from webapp.services.review import materialise, queue

    app = create_app()
    with app.app_context():
        upgrade()
        started = time.perf_counter()
        version_id = populate(args.images)
        print(
            f"queue_bench: {args.images:,} images and predictions written in "
            f"{time.perf_counter() - started:.1f} s to {instance / 'realfake.db'} (SQLite, WAL)"
        )
        build = materialise.rebuild()
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


def naive_next_item(version_id: int):
    """The next item computed from all predictions at request time (no materialised queue)."""
    from sqlalchemy import case, select

    from webapp.extensions import db
    from webapp.models import Image, Prediction
    from webapp.services.review import buckets

    s = buckets.settings()
    conditions = buckets.bucket_conditions(s)
    rank = case(*[(conditions[name], index) for index, name in enumerate(s.buckets)])
    key = case(*[(conditions[name], buckets.SORT_KEYS[name]()) for name in s.buckets])
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
    env = dict(os.environ, REALFAKE_INSTANCE=str(instance))
    with gunicorn(env, workers) as port:
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


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return ms_since(started)


if __name__ == "__main__":
    main()
