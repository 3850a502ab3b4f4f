"""Load benchmark: many reviewers at once through gunicorn, and proof that no decision is lost
or doubled.

Builds a throw-away instance (a temporary folder; on PostgreSQL a throw-away database on the
server named by ``--database-url``) holding enough images and an active version's predictions to
fill the queue, starts gunicorn with ``--workers`` sync workers on a free 127.0.0.1 port, and
runs ``--reviewers`` simulated reviewers, each its own session logged in through the real form
(CSRF included). Each works as the desk's script does: claim the next item while holding up to
three, decide it (mostly real or fake, some unsure, some skips), now and then undo the last
decision and decide that item again, and read its counts. It stops at ``--decisions`` decisions
in all, or after ``--seconds``.

It prints requests/s and p50 / p95 / p99 latency per endpoint, as the clients saw it and as the
server reports it (``Server-Timing``), the 4xx / 5xx / dropped-connection counts, and these
checks, which decide the exit status (1 when one fails):

- no server error (5xx or a dropped connection) and no refused request (4xx);
- every decision and undo a client got a 2xx for is in the database exactly once, as sent;
- no decision row that no client was told about;
- no image holds more standing votes than ``REVIEWS_PER_ITEM``, and no image was leased to two
  reviewers at once (a re-serve after an undo or a skip is legitimate and allowed);
- the queue's open / closed flags agree with the decisions.

    python bench/load_bench.py [--decisions 5000] [--reviewers 8] [--workers 4] [--seconds 900]
        [--images N] [--database-url postgresql+psycopg://user@127.0.0.1:5432/postgres | --postgres]

``--postgres`` starts a throw-away PostgreSQL server on loopback (``scripts/pgserver.py``; install
the binaries with ``scripts/setup_postgres.sh``) and removes it afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import HttpClient, gunicorn, percentile, populate  # noqa: E402

BUFFER = 3  # items a reviewer's screen holds, as static/js/review.js does
SKIP_RATE, UNSURE_RATE, UNDO_RATE = 0.05, 0.03, 0.03
STATS_EVERY = 25  # decisions between two reads of the reviewer's counts
QUEUE_SHARE = 0.2  # about a fifth of the seeded images land in the queue
ENDPOINTS = ("claim", "decide", "undo", "release", "stats")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=5000, help="decisions in all")
    parser.add_argument("--reviewers", type=int, default=8, help="simulated reviewers")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--seconds", type=float, default=900, help="time limit of the reviewing")
    parser.add_argument("--images", type=int, help="images to seed (default: enough to fill)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite, WAL)")
    where.add_argument(
        "--postgres",
        action="store_true",
        help="start a throw-away PostgreSQL server on loopback (scripts/pgserver.py, durable "
        "settings) and run on it",
    )
    args = parser.parse_args(argv)
    if min(args.decisions, args.reviewers, args.workers) < 1 or args.seconds <= 0:
        parser.error("--decisions, --reviewers, --workers and --seconds must be positive")
    if args.images is None:
        args.images = max(2000, int(args.decisions * 1.5 / QUEUE_SHARE))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    instance = Path(tempfile.mkdtemp(prefix="realfake-load-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            database_url = args.database_url
            if args.postgres:
                from scripts.pgserver import PostgresServer

                # fsync on, as a real deployment has it: the figures should mean something.
                database_url = stack.enter_context(PostgresServer(durable=True)).url()
            url = stack.enter_context(throwaway_database(database_url))
            return run(args, instance, url)
    finally:
        shutil.rmtree(instance, ignore_errors=True)


@contextlib.contextmanager
def throwaway_database(url: str | None) -> Iterator[str | None]:
    """On PostgreSQL, a fresh database on the server the URL names, dropped afterwards (so the
    bench never touches the database it was pointed at); any other URL is used as given."""
    if url is None:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    if base.get_backend_name() != "postgresql":
        yield url
        return
    name = f"realfake_load_{secrets.token_hex(4)}"
    server = create_engine(base, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def run(args: argparse.Namespace, instance: Path, url: str | None) -> int:
    env = dict(os.environ, REALFAKE_INSTANCE=str(instance))
    env.pop("REALFAKE_DATABASE_URL", None)
    env.pop("REALFAKE_REDIS_URL", None)
    if url:
        env["REALFAKE_DATABASE_URL"] = url
    os.environ.clear()
    os.environ.update(env)  # this process builds the same app as the server's workers

    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db
    from webapp.services.review import materialise

    app = create_app()
    names = [f"reviewer{index + 1}" for index in range(args.reviewers)]
    with app.app_context():
        upgrade()
        started = time.perf_counter()
        populate(args.images, names)
        queued = materialise.rebuild().n_entries
        backend = describe_database(db)
        db.session.remove()
        db.engine.dispose()
    print(
        f"load_bench: {backend}; {args.images:,} images seeded and {queued:,} queued in "
        f"{time.perf_counter() - started:.1f} s; gunicorn with {args.workers} workers; "
        f"{args.reviewers} reviewers; target {args.decisions:,} decisions, "
        f"time limit {args.seconds:g} s",
        flush=True,
    )
    with gunicorn(env, args.workers) as port:
        shared = Shared(target=args.decisions, deadline=time.monotonic() + args.seconds)
        seconds = review(port, names, shared)
    with app.app_context():
        checks = run_checks(shared)
        db.session.remove()
        db.engine.dispose()
    report(shared, seconds, checks)
    return 0 if all(passed for passed, _ in checks) else 1


def describe_database(db) -> str:
    if db.engine.dialect.name == "sqlite":
        mode = db.session.execute(db.text("PRAGMA journal_mode")).scalar()
        return f"SQLite ({mode.upper()}, busy timeout)"
    version = db.session.execute(db.text("SHOW server_version")).scalar()
    return f"PostgreSQL {version}"


# ----------------------------------------------------------------------------- the reviewers


@dataclass
class Shared:
    """What the reviewer threads share: the decision budget, the samples, what each holds,
    and every acknowledged decision."""

    target: int
    deadline: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    taken: int = 0
    samples: dict[str, list[tuple[int, float, float]]] = field(
        default_factory=lambda: {name: [] for name in ENDPOINTS}
    )
    holders: dict[int, str] = field(default_factory=dict)
    overlaps: list[str] = field(default_factory=list)
    acked: dict[int, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    time_ran_out: bool = False

    def take_slot(self) -> bool:
        """Reserve one decision of the budget; False when the budget or the time is spent."""
        with self.lock:
            if time.monotonic() > self.deadline:
                self.time_ran_out = True
                return False
            if self.taken >= self.target:
                return False
            self.taken += 1
            return True

    def hold(self, image_id: int, who: str) -> None:
        """Note that ``who`` was served ``image_id``; someone else holding it is an overlap."""
        with self.lock:
            other = self.holders.get(image_id)
            if other is not None and other != who:
                self.overlaps.append(f"image {image_id} served to {who} while {other} held it")
            self.holders[image_id] = who

    def drop(self, image_id: int, who: str) -> None:
        """``who`` lets go of ``image_id`` (just before deciding or releasing it)."""
        with self.lock:
            if self.holders.get(image_id) == who:
                del self.holders[image_id]

    def record(self, endpoint: str, status: int, wall: float, server: float) -> None:
        with self.lock:
            self.samples[endpoint].append((status, wall, server))

    def problem(self, message: str) -> None:
        with self.lock:
            self.problems.append(message)


class Reviewer(threading.Thread):
    """One simulated reviewer: its own session, its own screen buffer, its own undo stack."""

    def __init__(self, name: str, port: int, shared: Shared, seed: int) -> None:
        super().__init__(name=name, daemon=True)
        self.client = HttpClient(port, timeout=120)
        self.shared = shared
        self.rng = random.Random(seed)
        self.buffer: list[dict] = []
        self.undoable: list[int] = []  # my decision ids, latest last, not undone
        self.decided = 0
        self.exhausted = False

    def run(self) -> None:
        try:
            self.client.login(self.name)
            self.work()
        except Exception as error:  # reported, and fails the run: nothing is swallowed
            self.shared.problem(f"{self.name}: {error!r}")
        finally:
            self.release_all()

    def work(self) -> None:
        while True:
            self.fill()
            if not self.buffer:
                return  # nothing left in the queue for me
            if self.undoable and self.rng.random() < UNDO_RATE:
                self.undo()
                continue
            if not self.shared.take_slot():
                return
            self.decide(self.buffer.pop(0))
            if self.decided % STATS_EVERY == 0:
                self.call("stats", "GET", "/api/v1/review/stats")

    def call(self, endpoint: str, method: str, path: str, body: dict | None = None):
        """One API request, timed and recorded; a dropped connection counts as status 0."""
        try:
            status, data, wall, server = self.client.json(method, path, body)
        except OSError as error:
            self.shared.problem(f"{self.name} {method} {path}: {error!r}")
            status, data, wall, server = 0, None, float("nan"), float("nan")
        self.shared.record(endpoint, status, wall, server)
        return status, data

    def fill(self) -> None:
        while len(self.buffer) < BUFFER and not self.exhausted:
            holding = [item["image_id"] for item in self.buffer]
            status, data = self.call("claim", "POST", "/api/v1/review/claim", {"holding": holding})
            if status != 200:
                return
            if data["item"] is None:
                self.exhausted = True
                return
            self.take(data["item"])

    def take(self, item: dict, first: bool = False) -> None:
        image_id = item["image_id"]
        if any(held["image_id"] == image_id for held in self.buffer):
            self.shared.problem(f"{self.name} was served image {image_id}, which it holds")
            return
        self.shared.hold(image_id, self.name)
        self.buffer.insert(0 if first else len(self.buffer), item)

    def decide(self, item: dict) -> None:
        roll = self.rng.random()
        if roll < SKIP_RATE:
            choice = "skip"
        elif roll < SKIP_RATE + UNSURE_RATE:
            choice = "unsure"
        else:
            choice = self.rng.choice(("real", "fake"))
        prediction = item.get("prediction") or {}
        body = {
            "image_id": item["image_id"],
            "choice": choice,
            "model_version_id": prediction.get("model_version_id"),
        }
        self.shared.drop(item["image_id"], self.name)
        status, data = self.call("decide", "POST", "/api/v1/review/decisions", body)
        if status == 201:
            self.acknowledge(data["decision"])
            self.undoable.append(data["decision"]["id"])
            self.decided += 1

    def undo(self) -> None:
        expected = self.undoable.pop()
        status, data = self.call("undo", "POST", "/api/v1/review/undo", {})
        if status != 201:
            return
        self.acknowledge(data["decision"])
        if data["reverted"]["id"] != expected:
            self.shared.problem(
                f"{self.name}: undo reverted decision {data['reverted']['id']}, not {expected}"
            )
        if data.get("item"):
            self.take(data["item"], first=True)  # the undone item comes back to decide again

    def acknowledge(self, decision: dict) -> None:
        fields = ("image_id", "choice", "reverts_id")
        row = {key: decision[key] for key in fields} | {"user": self.name}
        with self.shared.lock:
            if decision["id"] in self.shared.acked:
                self.shared.problems.append(f"decision id {decision['id']} acknowledged twice")
            self.shared.acked[decision["id"]] = row

    def release_all(self) -> None:
        for item in self.buffer:
            self.shared.drop(item["image_id"], self.name)
        self.buffer.clear()
        with contextlib.suppress(Exception):
            self.call("release", "POST", "/api/v1/review/release", {})


def review(port: int, names: list[str], shared: Shared) -> float:
    """Run the reviewers to the end; returns the seconds they took."""
    warm_up(port)
    reviewers = [Reviewer(name, port, shared, seed) for seed, name in enumerate(names)]
    started = time.perf_counter()
    for reviewer in reviewers:
        reviewer.start()
    for reviewer in reviewers:
        reviewer.join()
    return time.perf_counter() - started


def warm_up(port: int) -> None:
    """One page from every worker before the clock starts (workers boot lazily, in parallel)."""
    client = HttpClient(port, timeout=300)
    for _ in range(8):
        client.request("GET", "/auth/login")


# ----------------------------------------------------------------------------- checks


def run_checks(shared: Shared) -> list[tuple[bool, str]]:
    """The correctness checks, against the database the server wrote (needs an app context)."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import QueueEntry, ReviewDecision, User
    from webapp.services.records import labels

    usernames = dict(db.session.execute(select(User.id, User.username)).all())
    rows = {row.id: row for row in db.session.scalars(select(ReviewDecision))}
    statuses = [s for samples in shared.samples.values() for s, _, _ in samples]
    server_errors = sum(1 for s in statuses if s == 0 or s >= 500)
    refused = sum(1 for s in statuses if 400 <= s < 500)
    lost = [
        i for i, sent in shared.acked.items() if not stored_as_sent(rows.get(i), sent, usernames)
    ]
    extra = sorted(set(rows) - set(shared.acked))
    undone = {row.reverts_id for row in rows.values() if row.reverts_id is not None}
    votes = Counter(
        row.image_id
        for row in rows.values()
        if row.choice in labels.VOTE_CHOICES and row.id not in undone
    )
    required = labels.reviews_per_item()
    doubled = sorted(image for image, count in votes.items() if count > required)
    settled = set(db.session.scalars(labels.settled_image_ids_query(required)))
    flags = dict(db.session.execute(select(QueueEntry.image_id, QueueEntry.is_open)).all())
    wrong_flags = sorted(image for image, is_open in flags.items() if is_open == (image in settled))
    return [
        (server_errors == 0, f"server errors (5xx or dropped connections): {server_errors}"),
        (refused == 0, f"refused requests (4xx): {refused}"),
        (
            not lost,
            f"acknowledged decisions and undos in the database exactly once, as sent: "
            f"{len(shared.acked) - len(lost):,} of {len(shared.acked):,}{sample(lost)}",
        ),
        (not extra, f"decision rows no client was told about: {len(extra)}{sample(extra)}"),
        (
            not doubled,
            f"images with more standing votes than REVIEWS_PER_ITEM={required}: "
            f"{len(doubled)}{sample(doubled)}",
        ),
        (
            not shared.overlaps,
            f"images leased to two reviewers at once: {len(shared.overlaps)}"
            f"{sample(shared.overlaps)}",
        ),
        (
            not wrong_flags,
            f"queue entries whose open flag disagrees with the decisions: {len(wrong_flags)}"
            f"{sample(wrong_flags)}",
        ),
        (
            not shared.problems,
            f"client-side problems: {len(shared.problems)}{sample(shared.problems)}",
        ),
    ]


def stored_as_sent(row, sent: dict, usernames: dict[int, str]) -> bool:
    return (
        row is not None
        and row.image_id == sent["image_id"]
        and row.choice == sent["choice"]
        and row.reverts_id == sent["reverts_id"]
        and usernames.get(row.user_id) == sent["user"]
    )


def sample(items: list) -> str:
    return f" (e.g. {items[:3]})" if items else ""


# ----------------------------------------------------------------------------- report


def report(shared: Shared, seconds: float, checks: list[tuple[bool, str]]) -> None:
    decisions = sum(1 for row in shared.acked.values() if row["choice"] != "undo")
    undos = len(shared.acked) - decisions
    requests = sum(len(samples) for samples in shared.samples.values())
    stop = "time limit reached" if shared.time_ran_out else "done"
    print(
        f"\nreviewing ({stop}): {decisions:,} decisions and {undos:,} undos acknowledged in "
        f"{seconds:.1f} s: {requests / seconds:.1f} requests/s, {decisions / seconds:.1f} "
        f"decisions/s"
    )
    header = f"{'endpoint':<9} {'n':>6} {'2xx':>6} {'4xx':>4} {'5xx':>4} {'drop':>4}"
    header += "".join(f" {name:>8}" for name in ("p50 ms", "p95 ms", "p99 ms"))
    header += "".join(f" {name:>8}" for name in ("srv p50", "srv p95", "srv p99"))
    print(header)
    everything = []
    for name in ENDPOINTS:
        print(row_text(name, shared.samples[name]))
        everything += shared.samples[name]
    print(row_text("all", everything))
    print("\nchecks:")
    for passed, text in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")
    failed = sum(1 for passed, _ in checks if not passed)
    print(f"result: {'all checks passed' if not failed else f'{failed} check(s) FAILED'}")


def row_text(name: str, samples: list[tuple[int, float, float]]) -> str:
    statuses = [status for status, _, _ in samples]
    wall = [w for _, w, _ in samples if w == w]
    server = [s for _, _, s in samples if s == s]
    counts = (
        len(samples),
        sum(200 <= s < 300 for s in statuses),
        sum(400 <= s < 500 for s in statuses),
        sum(s >= 500 for s in statuses),
        sum(s == 0 for s in statuses),
    )
    text = f"{name:<9} {counts[0]:>6} {counts[1]:>6} {counts[2]:>4} {counts[3]:>4} {counts[4]:>4}"
    text += "".join(f" {percentile(wall, q):>8.1f}" for q in (50, 95, 99))
    text += "".join(f" {percentile(server, q):>8.1f}" for q in (50, 95, 99))
    return text


if __name__ == "__main__":
    sys.exit(main())
