"""Import throughput against a bare PIL decode-and-resize loop, measured in the same run.

    .venv/bin/python bench/import_bench.py [N] [--workers W] [--rounds R] [--no-cifake]

Generates N (default 200) 1024x768 JPEGs in a temporary folder, then times

- the baseline: a process pool (W processes, the same start method the importer uses) running
  the bare loop the seed needed: open, ``draft`` to 224, convert to RGB, resize to 224x224 with
  ``reducing_gap``, nothing else (no hashing, no storing, no database, no result sent back);
- the real :func:`webapp.services.importing.importer.import_path` into a temporary instance with
  the same number of processes: hashing, checks, metadata, JPEG quality, thumbnails, originals, the
  224-pixel cache and the database rows.

Each round times the bare loop, a fresh import, and the bare loop again (the import is compared
with the mean of the two, since load from other work drifts); it prints images/s for both, their
ratio (target >= 0.8) and the same ratio in CPU seconds, which load hardly moves. Then it imports
the CIFAKE zip from ``../shared/datasets`` when present (target: 40,000 images in under 60 s).
The machine's load average is printed too: other work on the same cores moves every figure.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

REPO = Path(__file__).resolve().parents[1]
CIFAKE = REPO.parent / "shared" / "datasets" / "cifake-train-40k.zip"
SIZE = 224


def make_jpegs(folder: Path, count: int, seed: int = 2024) -> list[Path]:
    """``count`` distinct 1024x768 photographs-like JPEGs (smooth shapes plus sensor noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        base = PILImage.fromarray(coarse).resize((1024, 768), PILImage.Resampling.BICUBIC)
        noise = rng.normal(0, 6, size=(768, 1024, 3))
        pixels = np.clip(np.asarray(base, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
        path = folder / f"{index:05d}.jpg"
        PILImage.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def bare_decode(path: str) -> int:
    """The baseline: what any loader must do at least."""
    with PILImage.open(path) as image:
        image.draft("RGB", (SIZE, SIZE))
        rgb = image.convert("RGB")
        pixels = np.asarray(
            rgb.resize((SIZE, SIZE), PILImage.Resampling.BILINEAR, reducing_gap=3.0)
        )
    return int(pixels[0, 0, 0])


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pools' workers)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def baseline(paths: list[Path], workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds for the bare loop over ``paths`` with ``workers`` processes."""
    names = [str(p) for p in paths]
    chunk = max(2, min(64, len(names) // (workers * 16)))
    started, cpu = time.perf_counter(), cpu_seconds()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for _ in pool.imap(bare_decode, names, chunksize=chunk):
            pass
    return time.perf_counter() - started, cpu_seconds() - cpu


def fresh_app(instance: Path):
    """An app on a new instance folder with its schema."""
    os.environ["REALFAKE_INSTANCE"] = str(instance)
    sys.path.insert(0, str(REPO))
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.config import Config

    app = create_app(Config())
    with app.app_context():
        upgrade()
    return app


def timed_import(app, path: Path, workers: int, cache_size: int | None = None):
    """(wall, CPU, report) of one real import."""
    from webapp.services.importing.importer import import_path

    with app.app_context():
        started, cpu = time.perf_counter(), cpu_seconds()
        report = import_path(path, workers=workers, cache_size=cache_size)
        return time.perf_counter() - started, cpu_seconds() - cpu, report


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3, help="bare/import/bare rounds")
    parser.add_argument("--no-cifake", action="store_true")
    options = parser.parse_args()
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="import-bench-") as scratch:
        scratch = Path(scratch)
        print(f"{options.count} JPEGs 1024x768, {options.workers} processes; {load()}")
        paths = make_jpegs(scratch / "jpegs", options.count)
        make_jpegs(scratch / "warm-up", 4, seed=1)
        ratios, cpu_ratios = [], []
        for round_number in range(options.rounds):
            app = fresh_app(scratch / f"instance-{round_number}")
            # A long-running worker has compiled its SQL statements already; a fresh process
            # does it once (about 0.1 s): warm up on other images so that is not counted.
            timed_import(app, scratch / "warm-up", options.workers)
            before, before_cpu = baseline(paths, options.workers)
            seconds, cpu, report = timed_import(app, scratch / "jpegs", options.workers)
            after, after_cpu = baseline(paths, options.workers)
            assert report.imported == options.count, report.as_json()
            # Other work on the machine drifts: compare with the bare loop before and after.
            bare, bare_cpu = (before + after) / 2, (before_cpu + after_cpu) / 2
            ratios.append(bare / seconds)
            cpu_ratios.append(bare_cpu / cpu)
            print(
                f"round {round_number + 1}: bare loop {options.count / bare:6.1f} images/s "
                f"(before {options.count / before:.1f}, after {options.count / after:.1f}), "
                f"import_path {options.count / seconds:6.1f} images/s; ratio {ratios[-1]:.2f}; "
                f"CPU seconds bare {bare_cpu:.2f}, import {cpu:.2f}; {load()}"
            )
        print(
            f"ratio import / bare, median of {options.rounds}: {statistics.median(ratios):.2f} "
            f"wall clock (target >= 0.8), {statistics.median(cpu_ratios):.2f} in CPU time"
        )
        if CIFAKE.is_file() and not options.no_cifake:
            cifake_app = fresh_app(scratch / "cifake")
            seconds, _, report = timed_import(cifake_app, CIFAKE, options.workers, cache_size=32)
            total = report.imported + report.duplicates
            print(
                f"CIFAKE zip: {total} files ({report.imported} new, {report.duplicates} "
                f"duplicates, {len(report.rejected)} rejected) in {seconds:.1f} s = "
                f"{total / seconds:.0f} images/s (target < 60 s); {load()}"
            )
            seconds, _, report = timed_import(cifake_app, CIFAKE, options.workers, cache_size=32)
            print(
                f"CIFAKE again: {report.imported} new, {report.duplicates} duplicates "
                f"in {seconds:.1f} s; {load()}"
            )


if __name__ == "__main__":
    main()
