"""Check benchmark: one image checked end to end (upload to JSON), and the near-duplicate look-up
among N stored perceptual hashes (default 100,000).

Builds a throw-away instance (SQLite, WAL) with N images, their predictions and their evidence
rows (random 64-bit hashes, a few of them near the checked pictures), an active version whose
checkpoint is an untrained ResNet18 at ``--image-size`` (the time of a forward pass does not depend
on the weights), and a job worker in this process (a Huey consumer thread, as ``flask worker``
runs). Then it times ``POST /api/v1/checks`` through the Flask test client: the first check
(which loads the network in the worker) and the following ones, and the look-up alone
(``similar.find``) for hashes that have stored near duplicates and hashes that have none, and
the two stages of a check in one process (store, score) without the job hand-off.

    python bench/check_bench.py [--images 100000] [--checks 10] [--lookups 200] [--image-size 224]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import PASSWORD, csrf_from, ms_since, percentile, populate  # noqa: E402


def main() -> None:
    args = parse_args()
    instance = Path(tempfile.mkdtemp(prefix="realfake-check-bench-"))
    os.environ["REALFAKE_INSTANCE"] = str(instance)
    os.environ.pop("REALFAKE_DATABASE_URL", None)
    os.environ.pop("REALFAKE_REDIS_URL", None)
    os.environ["REALFAKE_LOGIN_RATE_LIMIT"] = "1000 per minute"
    try:
        run(args)
    finally:
        shutil.rmtree(instance, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--checks", type=int, default=10)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=224)
    return parser.parse_args()


def run(args: argparse.Namespace) -> None:
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db

    app = create_app()
    app.config["CHECK_WAIT_SECONDS"] = 300
    with app.app_context():
        upgrade()
        started = time.perf_counter()
        populate(args.images)
        hashes = store_hashes(args.images)
        use_untrained_checkpoint(args.image_size)
        print(
            f"check_bench: {args.images:,} images, predictions and perceptual hashes written in "
            f"{time.perf_counter() - started:.1f} s (SQLite, WAL)"
        )
        bench_lookups(hashes, args.lookups)
        db.session.remove()
    with running_worker(app):
        bench_checks(app, args.checks, args.image_size)
    bench_stages(app, args.checks)


def store_hashes(n_images: int) -> list[int]:
    """A random perceptual hash per stored image (evidence rows), returned in image order."""
    from sqlalchemy import insert

    from webapp.extensions import db
    from webapp.models import ImageEvidence, utcnow
    from webapp.services.evidence import phash

    rng = random.Random(0)
    hashes = [rng.getrandbits(64) for _ in range(n_images)]
    now = utcnow()
    for start in range(0, n_images, 20_000):
        rows = [
            {
                "image_id": index + 1,
                "phash": phash.to_signed(value),
                "findings": {},
                "computed_at": now,
                **{f"phash_band{i}": band for i, band in enumerate(phash.bands(value))},
            }
            for index, value in enumerate(hashes[start : start + 20_000], start=start)
        ]
        db.session.execute(insert(ImageEvidence), rows)
    db.session.commit()
    return hashes


def use_untrained_checkpoint(image_size: int) -> None:
    """Give the active version a real (untrained) network at ``image_size``."""
    from model.checkpoint import save_checkpoint
    from model.network import build_model
    from webapp.extensions import db
    from webapp.services.records import versions

    version = versions.active_version()
    model, init = build_model(init="random")
    path = versions.models_dir() / f"{version.name}.pt"
    meta = {"stem": "imagenet", "image_size": image_size, "mean": [0.5] * 3, "std": [0.25] * 3}
    save_checkpoint(path, model, {**meta, "init_weights": init})
    version.checkpoint_path, version.image_size = str(path), image_size
    db.session.commit()


def bench_lookups(hashes: list[int], lookups: int) -> None:
    """Near-duplicate look-up times: a stored hash with 3 bits flipped, and a fresh random one."""
    from webapp.services.evidence import similar

    rng = random.Random(1)
    for kind in ("near a stored image", "unrelated"):
        times, found = [], 0
        for _ in range(lookups):
            query = rng.getrandbits(64)
            if kind == "near a stored image":
                query = rng.choice(hashes)
                for bit in rng.sample(range(64), 3):
                    query ^= 1 << bit
            started = time.perf_counter()
            found += len(similar.find(query))
            times.append(ms_since(started))
        print(
            f"near-duplicate look-up among {len(hashes):,} hashes, {kind}: "
            f"p50 {percentile(times, 50):.2f} ms, p95 {percentile(times, 95):.2f} ms "
            f"({found / lookups:.2f} found per look-up)"
        )


class running_worker:  # noqa: N801  (used as a context manager, like a function)
    """A Huey consumer thread executing jobs against ``app``, as ``flask worker`` would."""

    def __init__(self, app) -> None:
        from huey.consumer import Consumer

        from webapp.jobs.core import set_worker_app
        from webapp.jobs.queue import huey

        huey.flush()
        set_worker_app(app)
        self.consumer = Consumer(
            huey,
            workers=1,
            worker_type="thread",
            periodic=False,
            check_worker_health=False,
            max_delay=0.1,
        )
        self.consumer._set_signal_handlers = lambda: None  # signals belong to the main thread
        self.thread = threading.Thread(target=self.consumer.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.consumer.stop(graceful=True)
        self.thread.join(timeout=30)


def photograph(seed: int) -> bytes:
    """A 512x512 JPEG crop of a scikit-image sample photograph, different for each seed."""
    from PIL import Image as PILImage
    from skimage import data as samples

    pixels = samples.astronaut()
    rng = random.Random(seed)
    left, top = rng.randrange(0, 200), rng.randrange(0, 200)
    image = PILImage.fromarray(pixels).crop((left, top, left + 312, top + 312)).resize((512, 512))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def bench_checks(app, checks: int, image_size: int) -> None:
    """Wall time of POST /api/v1/checks until the JSON is back, the first and the rest."""
    client = app.test_client()
    token = csrf_from(client.get("/auth/login").get_data(as_text=True))
    client.post("/auth/login", data={"username": "rita", "password": PASSWORD, "csrf_token": token})
    headers = {"X-CSRFToken": csrf_from(client.get("/check/").get_data(as_text=True))}
    times = []
    for index in range(checks + 1):
        data = {"file": (io.BytesIO(photograph(index)), f"photo-{index}.jpg")}
        started = time.perf_counter()
        response = client.post("/api/v1/checks", data=data, headers=headers)
        times.append(ms_since(started))
        body = response.get_json()
        if response.status_code != 201 or body["p_fake"] is None:
            raise SystemExit(f"check {index} failed: {response.status_code} {body}")
    rest = times[1:]
    print(
        f"one check end to end (upload to JSON, 512x512 JPEG, model at {image_size} px): "
        f"first {times[0]:.0f} ms (loads the network), then p50 {percentile(rest, 50):.0f} ms, "
        f"p95 {percentile(rest, 95):.0f} ms over {len(rest)} checks"
    )


def bench_stages(app, checks: int) -> None:
    """The two stages of a check in this one process, without the job hand-off: storing the
    image (importer and evidence) and scoring it (network loaded already)."""
    from webapp.services import checking
    from webapp.services.checking.job import run_check

    stored, scored = [], []
    with app.app_context(), app.test_request_context("/"):
        for index in range(checks):
            data = photograph(1000 + index)
            started = time.perf_counter()
            check = checking.create(data, f"stage-{index}.jpg", None)
            stored.append(ms_since(started))
            started = time.perf_counter()
            run_check(check.id)
            scored.append(ms_since(started))
    print(
        f"stages in one process: store (import + evidence) p50 {percentile(stored, 50):.0f} ms, "
        f"score p50 {percentile(scored, 50):.0f} ms over {checks} checks"
    )


if __name__ == "__main__":
    main()
