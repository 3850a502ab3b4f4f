r"""Label mistakes through the app: a kept version scores a newly imported set with flipped labels.

The desk's usual case, measured end to end: an active version (trained by
``cifake_app_bench.py --keep DIR``) and a new labelled import it never saw, some of whose labels
are wrong. The bench takes ``--n`` of the images that version never trained on (its val + test
splits, half of each class, seeded), writes them as PNG (the same pixels in new files, so they
import as new images), flips ``--flip`` of their labels at random in the ``real/`` and ``fake/``
layout, imports them with ``flask data import``, runs the ``predict`` job through a real Huey
worker, and ranks the new dataset's images by the label-issue score that job stored (what the
"suspected label mistake" bucket orders by). It prints the share of the flipped labels in the
first 5% (the issue's target: >= 70%; random order finds 5%), the accuracy of the stored
out-of-sample p(fake) against the true labels, and the seconds each step took. The dataset is
deleted again at the end, so the instance measures as before.

``--cold`` measures the other case, a cold start, instead: a fresh instance gets noise_bench's
sample (``--n`` CIFAKE images from the zip, the same pixels and the same flipped labels, as PNG),
a ``train --preset P`` job with ``--oof-method M`` (default ``margins``) runs through the worker
with the label-mistake job and the scoring it queues, and all the images are ranked by the
label-issue score stored (margins: every image by the margins network, which trains on all of
them; folds: the version's training images by the held-out networks, its val and test images by
the version itself).

Examples::

    python bench/noise_app_bench.py --instance KEPT          # 4,000 images, 5% flipped
    python bench/noise_app_bench.py --cold                   # nothing but the noisy 4,000
    python bench/noise_app_bench.py --cold --oof-method folds
    python bench/noise_app_bench.py --cold --oof-networks 2  # two margins networks averaged

Numbers depend on the kept version; the README says which one it was.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_app import fresh_app  # noqa: E402
from cifake_app_bench import held_out_ids, start_worker  # noqa: E402
from noise_bench import DEFAULT_ZIP, flip_labels, found_in_top, load_sample  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance", type=Path, help="a kept instance folder")
    parser.add_argument("--cold", action="store_true", help="a fresh instance with only the set")
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP, help="--cold: the CIFAKE zip")
    parser.add_argument("--preset", default="cifake", help="--cold: the version's recipe")
    parser.add_argument(
        "--oof-method", choices=["folds", "margins"], default="margins", help="--cold"
    )
    parser.add_argument(
        "--oof-networks",
        type=int,
        default=None,
        help="--cold with margins: networks whose margins are averaged (the CLI's --oof-networks)",
    )
    parser.add_argument("--n", type=int, default=4000, help="images (half of each class)")
    parser.add_argument("--flip", type=float, default=0.05, help="share of labels flipped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="noisy-bench", help="the new dataset's name")
    args = parser.parse_args(argv)
    if args.cold == (args.instance is not None):
        parser.error("give --instance KEPT or --cold")
    if args.oof_networks is not None and not (args.cold and args.oof_method == "margins"):
        parser.error("--oof-networks applies to --cold with --oof-method margins")
    return args


def pick(ids: list[int], labels: list[int], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` of ``ids``, half of each class, in a seeded order."""
    rng = np.random.default_rng(seed)
    ids, labels = np.asarray(ids), np.asarray(labels)
    chosen = [rng.permutation(ids[labels == c])[: n // 2] for c in (0, 1)]
    return np.concatenate(chosen), np.repeat([0, 1], [len(chosen[0]), len(chosen[1])])


def write_noisy(folder: Path, ids: np.ndarray, given: np.ndarray) -> list[str]:
    """The images as PNG under ``real/``/``fake/`` by their ``given`` label; returns each
    file's sha256, in the order of ``ids``."""
    import hashlib

    from webapp.extensions import db
    from webapp.models import Image as ImageRow
    from webapp.services.storage import original_path

    hashes = []
    for image_id, label in zip(ids.tolist(), given.tolist(), strict=True):
        with Image.open(original_path(db.session.get(ImageRow, image_id))) as picture:
            buffer = io.BytesIO()
            picture.convert("RGB").save(buffer, format="PNG")
        data = buffer.getvalue()
        target = folder / ("fake" if label else "real") / f"{image_id}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        hashes.append(hashlib.sha256(data).hexdigest())
    return hashes


def import_folder(app, folder: Path, dataset: str) -> float:
    """``flask data import FOLDER --dataset D`` through the app's CLI; its seconds."""
    started = time.perf_counter()
    result = app.test_cli_runner().invoke(
        args=["data", "import", str(folder), "--dataset", dataset, "--json"]
    )
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return time.perf_counter() - started


def stored_scores(dataset_name: str, version, hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The label-issue score and out-of-sample p(fake) the version's scoring stored for each
    image of the dataset, in the order of ``hashes``."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Dataset, DatasetImage, Prediction
    from webapp.models import Image as ImageRow

    dataset = db.session.scalar(select(Dataset).where(Dataset.name == dataset_name))
    stored = {
        row.sha256: (row.label_issue_score, row.oos_p_fake)
        for row in db.session.execute(
            select(ImageRow.sha256, Prediction.label_issue_score, Prediction.oos_p_fake)
            .join(DatasetImage, DatasetImage.image_id == ImageRow.id)
            .join(Prediction, Prediction.image_id == ImageRow.id)
            .where(DatasetImage.dataset_id == dataset.id)
            .where(Prediction.model_version_id == version.id)
        )
    }
    issue, p_fake = np.array([stored[sha] for sha in hashes], dtype=float).T
    return issue, p_fake


def cold_start(args) -> dict:
    """A fresh instance with only the noisy sample: train, judge the labels, score, rank."""
    import hashlib

    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.jobs import submit, wait_for
    from webapp.models import Job
    from webapp.services.records import versions

    images, truth = load_sample(args.zip, args.n, args.seed)
    given, flipped = flip_labels(truth, args.flip, args.seed)
    root = Path(tempfile.mkdtemp(prefix="noise-cold-"))
    hashes = []
    for index, (pixels, label) in enumerate(zip(images, given.tolist(), strict=True)):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        target = root / "source" / ("fake" if label else "real") / f"{index:05d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(buffer.getvalue())
        hashes.append(hashlib.sha256(buffer.getvalue()).hexdigest())
    app = fresh_app(root / "instance")
    consumer = start_worker(app)
    jobs = {}
    try:
        with app.app_context():
            import_seconds = import_folder(app, root / "source", args.dataset)
            started = time.perf_counter()
            params = {"preset": args.preset, "seed": args.seed, "oof_method": args.oof_method}
            if args.oof_method == "folds":
                params["oof_folds"] = 5  # as the CLI's --oof-method folds
            elif args.oof_networks:
                params["oof_networks"] = args.oof_networks
            trained = wait_for(submit("train", params).id, poll=1.0)
            if trained.state != "succeeded":
                raise SystemExit(f"training failed: {trained.error}")
            version = versions.get_version(trained.result["version"])
            for kind in ("oof", "predict"):  # the label-mistake job queues the scoring
                done = wait_for(db.session.scalar(select(Job.id).where(Job.kind == kind)), poll=1.0)
                if done.state != "succeeded":
                    raise SystemExit(f"the {kind} job failed: {done.error}")
                jobs[kind] = done
            total_seconds = time.perf_counter() - started
            issue, p_fake = stored_scores(args.dataset, version, hashes)
            figures = {
                "version": version.name,
                "oof_method": args.oof_method,
                "oof_networks": jobs["oof"].result.get("networks"),
                "images": int(issue.size),
                "trained_on": len(versions.training_ids(version)),
                "flipped": int(flipped.size),
                "found_in_first_5pct": round(
                    found_in_top(np.argsort(-issue, kind="stable"), flipped), 4
                ),
                "oos_accuracy_vs_truth": round(float(((p_fake >= 0.5) == truth).mean()), 4),
                "import_seconds": round(import_seconds, 1),
                **{
                    f"{kind}_minutes": round(
                        (job.finished_at - job.started_at).total_seconds() / 60, 2
                    )
                    for kind, job in {"train": trained, **jobs}.items()
                },
                "train_to_scored_minutes": round(total_seconds / 60, 2),
            }
    finally:
        consumer.stop(graceful=True)
        shutil.rmtree(root, ignore_errors=True)
    return figures


def main(argv=None) -> dict:
    """Run the bench; print and return its figures."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.jobs import submit, wait_for
    from webapp.models import Dataset
    from webapp.services.admin.dataset_admin import delete_dataset
    from webapp.services.records import versions

    args = parse_args(argv)
    if args.cold:
        figures = cold_start(args)
        for key, value in figures.items():
            print(f"{key}: {value}")
        return figures
    app = fresh_app(args.instance)
    root = Path(tempfile.mkdtemp(prefix="noise-app-"))
    consumer = start_worker(app)
    try:
        with app.app_context():
            version = versions.active_version()
            if version is None:
                raise SystemExit(f"{args.instance} has no active version")
            ids, truth = pick(*held_out_ids(), args.n, args.seed)
            given, flipped = flip_labels(truth, args.flip, args.seed)
            hashes = write_noisy(root / "source", ids, given)
            import_seconds = import_folder(app, root / "source", args.dataset)
            started = time.perf_counter()
            scoring = wait_for(submit("predict", {"version": version.name}).id, poll=1.0)
            if scoring.state != "succeeded":
                raise SystemExit(f"scoring failed: {scoring.error}")
            score_seconds = time.perf_counter() - started
            issue, p_fake = stored_scores(args.dataset, version, hashes)
            figures = {
                "version": version.name,
                "images": int(issue.size),
                "flipped": int(flipped.size),
                "found_in_first_5pct": round(
                    found_in_top(np.argsort(-issue, kind="stable"), flipped), 4
                ),
                "oos_accuracy_vs_truth": round(float(((p_fake >= 0.5) == truth).mean()), 4),
                "import_seconds": round(import_seconds, 1),
                "score_seconds": round(score_seconds, 1),
            }
            delete_dataset(
                db.session.scalar(select(Dataset).where(Dataset.name == args.dataset)), None
            )
    finally:
        consumer.stop(graceful=True)
        shutil.rmtree(root, ignore_errors=True)
    for key, value in figures.items():
        print(f"{key}: {value}")
    return figures


if __name__ == "__main__":
    main()
