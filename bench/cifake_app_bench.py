r"""CIFAKE through the app's own path: import, a training job, scoring, held-out evaluation.

Unlike ``cifake_bench.py`` (which calls ``model.train`` directly), this drives the desk as a user
would, in a temporary instance: ``flask data import`` of a seeded, class-balanced sample of
``../shared/datasets/cifake-train-40k.zip`` (``--n``, default all 40,000) laid out as ``real/`` and
``fake/`` so the importer splits by hash 80/10/10, then a ``train`` job with the ``--preset``
recipe (default ``cifake``; the job log says which size, epochs and preset it used) run by a real
Huey worker, the ``predict`` job it queues, and finally the held-out figures: the version's own
test-split metrics (10%) and the stored predictions on val + test (the 20% the version never
trained on; val also fitted its temperature and threshold, so it is not entirely unseen).

Examples::

    python bench/cifake_app_bench.py --minutes 20 --budget-clock cpu   # the issue's run
    python bench/cifake_app_bench.py --n 400 --epochs 1                # a smoke run (a minute)
    python bench/cifake_app_bench.py --preset cifake-robust --perturb jpeg75   # JPEG robustness
    python bench/cifake_app_bench.py --instance KEPT --perturb jpeg75   # measure a kept run again

Besides the figures at the version's threshold it prints the held-out accuracy at 0.5 and the
flip-TTA lever on the same network (``held_out_tta_{none,flip}_*``).

``--minutes`` passes a time budget to the job (``options: max_minutes``: the schedule follows the
clock); without it the preset's epochs run. ``--option KEY=VALUE`` sets any TrainConfig field
(``--option ema_decay=0.999 --option tta=flip``: the levers, off in the presets).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_app import CIFAKE, fresh_app  # noqa: E402

from bench.common import option_values  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", type=Path, default=CIFAKE)
    parser.add_argument("--n", type=int, default=40000, help="images (half of each class)")
    parser.add_argument("--preset", default="cifake")
    parser.add_argument("--epochs", type=int, help="default: the preset's")
    parser.add_argument("--minutes", type=float, help="time budget of the training job")
    parser.add_argument("--budget-clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--option", action="append", default=[], help="TrainConfig KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep the instance in this folder")
    parser.add_argument(
        "--instance",
        type=Path,
        help="measure the newest version of an instance an earlier run kept (--keep) instead of "
        "importing and training again",
    )
    parser.add_argument(
        "--perturb",
        action="append",
        default=[],
        help="also score the held-out images re-encoded this way (jpeg75, jpeg50, resize50, "
        "crop90) by the app's own perturbation path, beside the clean figures",
    )
    return parser.parse_args(argv)


def write_sample(zip_path: Path, folder: Path, count: int, seed: int) -> int:
    """A seeded, class-balanced sample of the zip as ``folder/{real,fake}/*.jpg``."""
    rng = np.random.default_rng(seed)
    written = 0
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith(".jpg"))
        for label in ("real", "fake"):
            members = [n for n in names if f"/{label.upper()}/" in n]
            take = min(count // 2, len(members))
            (folder / label).mkdir(parents=True)
            for index, name in enumerate(sorted(rng.choice(members, take, replace=False))):
                (folder / label / f"{index:05d}.jpg").write_bytes(archive.read(name))
                written += 1
    return written


def start_worker(app):
    """A real Huey consumer in this process (as the tests run one)."""
    from huey.consumer import Consumer

    from webapp.jobs.core import set_worker_app
    from webapp.jobs.queue import huey

    set_worker_app(app)
    consumer = Consumer(huey, workers=1, worker_type="thread", periodic=False)
    consumer._set_signal_handlers = lambda: None  # signals belong to the main thread only
    threading.Thread(target=consumer.run, daemon=True).start()
    return consumer


def held_out_metrics(version) -> dict:
    """The version's stored predictions on the val + test images, at its threshold."""
    from sqlalchemy import select

    from model.metrics import classification_metrics
    from webapp.extensions import db
    from webapp.models import Prediction

    ids, labels = held_out_ids()
    rows = dict(
        db.session.execute(
            select(Prediction.image_id, Prediction.p_fake).where(
                Prediction.model_version_id == version.id
            )
        ).all()
    )
    return classification_metrics(labels, [rows[i] for i in ids], version.threshold)


def held_out_ids():
    """The val + test image ids and their labels (the 20% no version trains on)."""
    from webapp.services.training.trainset import select_training_set

    trainset = select_training_set()
    return trainset.val.ids + trainset.test.ids, trainset.val.labels + trainset.test.labels


def held_out_tta(version) -> dict:
    """The lever flip TTA measured on the version's own network: held-out accuracy (at 0.5 and
    at the version's threshold) and AUC with and without the mirrored copy. The threshold was
    fitted without TTA, so the 0.5 figures are the fair comparison."""
    from model.checkpoint import load_checkpoint
    from model.metrics import classification_metrics
    from model.predict import Predictor
    from webapp.services.importing.pixels import pixels_for

    ids, labels = held_out_ids()
    network, meta = load_checkpoint(version.checkpoint_path)
    arms = {
        tta: Predictor(network, {**meta, "tta": tta}, device="cpu", precision="fp32")
        for tta in ("none", "flip")
    }
    scores = {tta: [] for tta in arms}
    for start in range(0, len(ids), 2048):  # each chunk's pixels read once for both arms
        pixels = pixels_for(meta, ids[start : start + 2048])
        for tta, predictor in arms.items():
            scores[tta].append(predictor.predict(pixels).p_fake)
    figures = {}
    for tta, chunks in scores.items():
        p_fake = np.concatenate(chunks)
        at_half = classification_metrics(labels, p_fake, 0.5)
        at_threshold = classification_metrics(labels, p_fake, version.threshold)
        figures[f"held_out_tta_{tta}_accuracy_at_0.5"] = at_half["accuracy"]
        figures[f"held_out_tta_{tta}_accuracy_at_threshold"] = at_threshold["accuracy"]
        figures[f"held_out_tta_{tta}_roc_auc"] = at_half["roc_auc"]
    return figures


def version_figures(version, perturbations, log: str) -> dict:
    """What a run measured of ``version``: its held-out figures at its threshold, the flip-TTA
    lever, each perturbation's, and the training job's log lines about its settings and the
    training precision it timed."""
    held_out = held_out_metrics(version)
    figures = {
        "settings": [line for line in log.splitlines() if "preset" in line][-1:],
        "training_tuning": [line for line in log.splitlines() if " training " in line],
        "version": version.name,
        "epochs_run": len(version.history or []),
        "threshold": version.threshold,
        "test_accuracy": version.metrics.get("test", {}).get("accuracy"),
        "test_roc_auc": version.metrics.get("test", {}).get("roc_auc"),
        "held_out_n": held_out["n"],
        "held_out_accuracy": held_out["accuracy"],
        "held_out_roc_auc": held_out["roc_auc"],
        "held_out_tpr_at_fpr": held_out["tpr_at_fpr"],
        **held_out_tta(version),
    }
    for perturbation in perturbations:
        perturbed = held_out_perturbed(version, perturbation)
        figures[f"held_out_{perturbation}_accuracy"] = perturbed["accuracy"]
        figures[f"held_out_{perturbation}_roc_auc"] = perturbed["roc_auc"]
        figures[f"held_out_{perturbation}_drop_points"] = round(
            100 * (held_out["accuracy"] - perturbed["accuracy"]), 2
        )
    return figures


def held_out_perturbed(version, perturbation: str) -> dict:
    """The version on perturbed copies of its val + test images (``model evaluate --perturb``'s
    own decoding and re-encoding), at its threshold."""
    from model.metrics import classification_metrics
    from webapp.services.training.robustness import perturbed_p_fake

    ids, labels = held_out_ids()
    p_fake = perturbed_p_fake(version, ids, perturbation)
    return classification_metrics(labels, p_fake, version.threshold)


def train_and_score(app, params: dict) -> tuple[object, float, str]:
    """Submit the training job, wait for it and for the scoring it queues."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.jobs import submit, wait_for
    from webapp.models import Job
    from webapp.services.records import versions

    started = time.perf_counter()
    job = wait_for(submit("train", params).id, poll=1.0)
    if job.state != "succeeded":
        raise SystemExit(f"training failed: {job.error}")
    minutes = (time.perf_counter() - started) / 60
    scoring = db.session.scalar(select(Job).where(Job.kind == "predict").order_by(Job.id.desc()))
    wait_for(scoring.id, poll=1.0)
    version = versions.get_version(job.result["version"])
    return version, minutes, job.log


def main(argv=None) -> dict:
    """Run the bench; print and return its figures."""
    args = parse_args(argv)
    if not args.zip.exists():
        raise SystemExit(f"{args.zip} not found (see ../shared/datasets/README.md)")
    if args.instance:
        return measure_kept(args)
    root = Path(tempfile.mkdtemp(prefix="cifake-app-"))
    try:
        written = write_sample(args.zip, root / "source", args.n, args.seed)
        app = fresh_app(args.keep or root / "instance")
        runner = app.test_cli_runner()
        started = time.perf_counter()
        with app.app_context():
            imported = runner.invoke(
                args=["data", "import", str(root / "source"), "--dataset", "cifake", "--json"]
            )
        import_seconds = time.perf_counter() - started
        if imported.exit_code != 0:
            raise SystemExit(imported.output)
        options = option_values(args.option)
        if args.minutes:
            options.update(max_minutes=args.minutes, budget_clock=args.budget_clock)
        params = {"preset": args.preset, "epochs": args.epochs, "seed": args.seed}
        consumer = start_worker(app)
        with app.app_context():
            version, minutes, log = train_and_score(app, {**params, "options": options})
            figures = {
                "images": written,
                "import_seconds": round(import_seconds, 1),
                "train_minutes": round(minutes, 2),
                **version_figures(version, args.perturb, log),
            }
        consumer.stop(graceful=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for key, value in figures.items():
        print(f"{key}: {value}")
    return figures


def measure_kept(args) -> dict:
    """The held-out figures of the newest version of a kept instance (no import, no training)."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Job, ModelVersion

    app = fresh_app(args.instance)
    with app.app_context():
        version = db.session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())).first()
        if version is None:
            raise SystemExit(f"{args.instance} holds no model version")
        training = db.session.scalars(
            select(Job).where(Job.kind == "train").order_by(Job.id.desc())
        ).first()
        figures = version_figures(version, args.perturb, (training.log or "") if training else "")
    for key, value in figures.items():
        print(f"{key}: {value}")
    return figures


if __name__ == "__main__":
    main()
