"""Image browser benchmark: how long one page of the grid takes at 100,000 images.

Builds a throw-away SQLite (WAL) instance with N images (default 100,000) written directly as
rows (``bench.common.populate``: one dataset, one active version's predictions), varied file
file sizes and dimensions, 5,000 review decisions and the materialised review queue, then times
:func:`webapp.services.admin.image_browser.page` (60 images, keyset paging) for each sort and
filter: the first page, and a deep page (its cursor fetched first, after walking ``--deep``
pages), median and p95 of ``--repeat`` runs. Last, the whole ``GET /admin/images/`` (query,
template, 60 thumbnail links) through the Flask test client as an admin.

    python bench/browser_bench.py [--images 100000] [--repeat 15] [--deep 200]
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

from bench.common import PASSWORD, csrf_from, percentile, populate  # noqa: E402

SCENARIOS = {
    "all, oldest first": {},
    "all, p(fake) high to low": {"sort": "-p_fake"},
    "all, most out of distribution": {"sort": "-ood"},
    "all, largest files": {"sort": "-bytes"},
    "dataset + label real + verdict fake": {"dataset": "bench", "label": "real", "verdict": "fake"},
    "p(fake) 0.35-0.65, p(fake) sort": {"p_min": 0.35, "p_max": 0.65, "sort": "p_fake"},
    "bucket misclassified": {"bucket": "misclassified"},
    "reviewed": {"reviewed": "yes"},
    "not reviewed, split test": {"reviewed": "no", "split": "test"},
    "format JPEG, 50-100 KB": {"format": "JPEG", "kb_min": 50, "kb_max": 100},
    "long side 1024-2048 px": {"px_min": 1024, "px_max": 2048},
    "long side <= 256 px": {"px_max": 256},
    "long side <= 256 px, largest files": {"px_max": 256, "sort": "-bytes"},
    "long side >= 3000 px, 100+ KB": {"px_min": 3000, "kb_min": 100},
    "OOD >= 0.9, OOD sort": {"ood_min": 0.9, "sort": "-ood"},
}


def main() -> None:
    args = parse_args()
    instance = Path(tempfile.mkdtemp(prefix="realfake-browser-bench-"))
    os.environ["REALFAKE_INSTANCE"] = str(instance)
    os.environ.pop("REALFAKE_DATABASE_URL", None)
    try:
        run(args)
    finally:
        shutil.rmtree(instance, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per figure")
    parser.add_argument("--deep", type=int, default=200, help="pages walked for the deep page")
    return parser.parse_args()


def run(args: argparse.Namespace) -> None:
    import logging

    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db

    logging.disable(logging.INFO)
    app = create_app()
    with app.app_context():
        upgrade()
        started = time.perf_counter()
        version_id = populate(args.images)
        add_sizes_and_decisions(version_id, args.images)
        print(
            f"browser_bench: {args.images:,} images, predictions and 5,000 decisions written in "
            f"{time.perf_counter() - started:.1f} s (SQLite, WAL)"
        )
        time_pages(args)
        db.session.remove()
    time_http(app, args)


def add_sizes_and_decisions(version_id: int, n_images: int) -> None:
    """File sizes from 1 KB to 200 KB, widths and heights from 64 to 4,159 px, 5,000 decisions,
    an admin, and the queue built."""
    from sqlalchemy import insert, text

    from webapp.extensions import db
    from webapp.models import ReviewDecision, User
    from webapp.services.review import materialise

    db.session.execute(
        text(
            "UPDATE images SET bytes = 1024 + (id * 7919) % 204800, "
            "width = 64 + (id * 7907) % 4096, height = 64 + (id * 104729) % 4096"
        )
    )
    reviewer = db.session.scalar(db.select(User.id).where(User.username == "rita"))
    step = max(n_images // 5000, 1)
    rows = [
        {
            "image_id": image_id,
            "user_id": reviewer,
            "model_version_id": version_id,
            "label_before": "real",
            "choice": "fake" if image_id % 3 else "real",
            "note": "",
        }
        for image_id in range(1, n_images + 1, step)
    ][:5000]
    db.session.execute(insert(ReviewDecision), rows)
    admin = User(username="ada", role="admin")
    admin.set_password(PASSWORD)
    db.session.add(admin)
    db.session.commit()
    materialise.rebuild()


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return (time.perf_counter() - started) * 1000


def deep_cursor(chosen, pages: int) -> tuple[str, int]:
    """The cursor after walking ``pages`` pages (or to the last one); and how many were walked."""
    from webapp.services.admin import image_browser

    after, walked = "", 0
    while walked < pages:
        _, following = image_browser.page(chosen, after=after)
        if not following:
            break
        after, walked = following, walked + 1
    return after, walked


def time_pages(args: argparse.Namespace) -> None:
    from webapp.services.admin import image_browser
    from webapp.services.admin.image_browser import BrowseFilter

    print(f"\nimage_browser.page (60 images), median / p95 of {args.repeat} runs, ms:")
    print(f"  {'scenario':<40} {'first page':>16} {'deep page':>26}")
    for name, fields in SCENARIOS.items():
        chosen = BrowseFilter(**fields)
        first = [timed(lambda c=chosen: image_browser.page(c)) for _ in range(args.repeat)]
        after, walked = deep_cursor(chosen, args.deep)
        deep = [
            timed(lambda c=chosen, a=after: image_browser.page(c, after=a))
            for _ in range(args.repeat)
        ]
        print(
            f"  {name:<40} {statistics.median(first):7.1f} / {percentile(first, 95):6.1f}"
            f"   page {walked + 1:>4}: {statistics.median(deep):7.1f} / {percentile(deep, 95):6.1f}"
        )


def time_http(app, args: argparse.Namespace) -> None:
    client = app.test_client()
    token = csrf_from(client.get("/auth/login").get_data(as_text=True))
    form = {"username": "ada", "password": PASSWORD, "csrf_token": token}
    assert client.post("/auth/login", data=form).status_code == 302
    print("\nGET /admin/images/ through the Flask test client (query + template), ms:")
    for query in ("", "?sort=-p_fake", "?reviewed=no&split=test", "?bucket=uncertain"):
        runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = client.get(f"/admin/images/{query}")
            runs.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
        print(
            f"  {query or '(no filter)':<28} median {statistics.median(runs):6.1f}"
            f"  p95 {percentile(runs, 95):6.1f}"
        )


if __name__ == "__main__":
    main()
