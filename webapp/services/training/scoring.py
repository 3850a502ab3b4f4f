"""Scoring images with a version: calibrated p_fake, out-of-sample and out-of-distribution scores.

The network is loaded lazily once per process and cached (the job worker uses it for scoring
and heatmaps; the web process never imports this module).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flask import current_app
from sqlalchemy import insert, select

from model.predict import Predictor, outputs_from_features

from ...extensions import db
from ...jobs import handler
from ...models import Image, ModelVersion, Prediction
from ..importing.pixels import pixels_for
from ..records import versions

BATCH = 256  # images per forward pass unless SCORE_BATCH says otherwise
_cache: dict[tuple[int, str], Predictor] = {}
_cache_lock = threading.Lock()


def get_predictor(version: ModelVersion, log=None) -> Predictor:
    """The version's network, loaded once per process, in the engine, precision and batch size
    measured fastest on this machine for its input size (``engines``; measured on first use)."""
    key = (version.id, version.checkpoint_path)
    with _cache_lock:
        if key not in _cache:
            _cache.clear()  # one network in memory at a time is plenty for a desk
            _cache[key] = tuned_predictor(version.checkpoint_path, log=log)
        return _cache[key]


def tuned_predictor(checkpoint_path, log=None) -> Predictor:
    """A predictor for a checkpoint in this machine's measured fastest engine (``engines``);
    the fused fp32 network when tuning is off."""
    from model.checkpoint import load_checkpoint
    from model.device import pick_device

    from . import engines

    model, meta = load_checkpoint(checkpoint_path)
    device = pick_device(current_app.config["MODEL_DEVICE"])
    choice = engines.inference_choice(model, meta, device, log=log)
    if choice is None:
        return Predictor(model, meta, device=device, precision="fp32", engine="fused")
    if log is not None:
        log(
            f"engine {choice.engine} {choice.precision} batch {choice.batch_size}: measured "
            f"{choice.images_per_second:.1f} img/s, {choice.speedup:.2f}x eager fp32"
        )
    return Predictor(
        model,
        meta,
        device=device,
        precision=choice.precision,
        engine=choice.engine,
        batch_size=choice.batch_size,
    )


def use_predictor(version: ModelVersion, predictor: Predictor) -> None:
    """Make ``predictor`` the cached network of ``version`` in this process, so scoring runs
    with a chosen engine and precision (``bench/model_bench.py`` compares engines this way)."""
    with _cache_lock:
        _cache.clear()
        _cache[(version.id, version.checkpoint_path)] = predictor


class Stopwatch:
    """Seconds spent in each named stage of a job, for its result (where did the time go?)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Charge the time since the previous lap to ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 4)
        self._last = now


def chunks(values: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def features_path(version: ModelVersion) -> Path:
    """Penultimate features of every scored image, kept for the head-only refresh and OOD."""
    path = Path(current_app.instance_path) / "features"
    path.mkdir(parents=True, exist_ok=True)
    return path / f"{version.name}.npz"


def load_features(version: ModelVersion) -> tuple[np.ndarray, np.ndarray]:
    """The (ids, features) a version's scoring stored; ValueError when it has not scored."""
    path = features_path(version)
    if not path.exists():
        raise ValueError(f"{version.name} has no stored features: score images with it first")
    with np.load(path) as data:
        return data["ids"], data["features"]


def _outputs_from_parent_features(version: ModelVersion, image_ids: Sequence[int]):
    """A head-only version shares its parent's backbone: reuse the parent's features."""
    parent = db.session.get(ModelVersion, version.parent_id)
    try:
        ids, features = load_features(parent)
    except ValueError:
        return None
    position = {image_id: row for row, image_id in enumerate(ids.tolist())}
    if any(image_id not in position for image_id in image_ids):
        return None
    rows = features[[position[i] for i in image_ids]]
    output = outputs_from_features(get_predictor(version).model, rows, version.temperature)
    return {"p_fake_raw": output.p_fake_raw, "p_fake": output.p_fake, "features": output.features}


def network_outputs(version: ModelVersion, image_ids: Sequence[int], progress=None):
    """Scores for ``image_ids``: from cached features for a head-only version, else the network."""
    if version.kind == "head" and version.parent_id:
        reused = _outputs_from_parent_features(version, image_ids)
        if reused is not None:
            return reused
    return run_network(version, image_ids, progress)


def audit_key(sha256: str, version_name: str) -> float:
    """A stable uniform number per (image, version) that decides the audit sample."""
    digest = hashlib.sha256(f"{version_name}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def score_batch() -> int:
    """Images per forward pass when scoring and evaluating (``SCORE_BATCH``)."""
    return max(1, int(current_app.config.get("SCORE_BATCH") or BATCH))


def run_network(version: ModelVersion, image_ids: Sequence[int], progress=None) -> dict[str, Any]:
    """Raw and calibrated p_fake and features for ``image_ids``, batch by batch from the cache."""
    predictor = get_predictor(version)
    batch = score_batch()
    raw, calibrated, features = [], [], []
    for done, chunk in enumerate(chunks(list(image_ids), batch)):
        output = predictor.predict(pixels_for(predictor.meta, chunk))
        raw.append(output.p_fake_raw)
        calibrated.append(output.p_fake)
        features.append(output.features.astype(np.float32))
        if progress is not None:
            progress(min((done + 1) * batch, len(image_ids)), len(image_ids))
    if not raw:
        return {"p_fake_raw": np.zeros(0), "p_fake": np.zeros(0), "features": np.zeros((0, 512))}
    return {
        "p_fake_raw": np.concatenate(raw),
        "p_fake": np.concatenate(calibrated),
        "features": np.concatenate(features),
    }


def out_of_sample_scores(
    image_ids: Sequence[int], features: np.ndarray, folds: int
) -> tuple[np.ndarray, np.ndarray]:
    """K-fold out-of-sample p_fake and label-issue scores (NaN for unlabelled images)."""
    from model.scores import label_issue_scores, out_of_sample_probabilities

    from ..records.labels import effective_labels
    from .trainset import CLASS_INDEX

    labels = effective_labels(None)
    positions = [i for i, image_id in enumerate(image_ids) if labels.get(image_id) in CLASS_INDEX]
    targets = np.asarray([CLASS_INDEX[labels[image_ids[i]]] for i in positions], dtype=np.int64)
    oos = np.full(len(image_ids), np.nan)
    issues = np.full(len(image_ids), np.nan)
    if len(positions) and np.bincount(targets, minlength=2).min() >= folds:
        oos[positions] = out_of_sample_probabilities(features[positions], targets, folds=folds)
        issues[positions] = label_issue_scores(targets, oos[positions])
    return oos, issues


def held_out_network_scores(
    version: ModelVersion, image_ids: Sequence[int], p_fake: np.ndarray, default_oos: np.ndarray
):
    """Out-of-sample p_fake and label-issue scores from the version's out-of-fold job
    (``oof_training``) for the images it trained on, and from the version itself for the
    labelled images it never saw; None when it has no out-of-fold file.

    A file of training margins (method ``margins``, every labelled image) gives the label-issue
    scores only: a margin recorded while training on the image is not an out-of-sample
    probability, so the out-of-sample p_fake stays ``default_oos`` (the light model's) for the
    version's training images and the version's own for the others.
    """
    from model.scores import label_issue_scores

    from ..records.labels import effective_labels
    from .oof_training import read_out_of_fold
    from .trainset import CLASS_INDEX

    read = read_out_of_fold(version)
    if read is None:
        return None
    out_of_fold, method = read
    labels = effective_labels(None)
    ids = np.asarray(image_ids, dtype=np.int64)
    targets = np.array([CLASS_INDEX.get(labels.get(int(i)), -1) for i in ids], dtype=np.int64)
    labelled = targets >= 0
    own = np.asarray(p_fake, dtype=np.float64)
    judged = np.array(
        [out_of_fold.get(int(i), own[row]) for row, i in enumerate(ids)], dtype=np.float64
    ).reshape(ids.size)
    if method == "margins":
        trained = np.isin(ids, versions.training_ids(version))
        chosen = np.where(trained, np.asarray(default_oos, dtype=np.float64), own)
    else:
        chosen = judged
    oos = np.where(labelled, chosen, np.nan)
    issues = np.full(ids.size, np.nan)
    issues[labelled] = label_issue_scores(targets[labelled], judged[labelled])
    return oos, issues


def ood_scores(version: ModelVersion, image_ids: Sequence[int], features: np.ndarray) -> np.ndarray:
    """How unlike the version's training images each image is (a percentile in [0, 1])."""
    from model.scores import OODScorer

    train_ids = versions.training_ids(version)
    is_train = np.isin(np.asarray(image_ids), train_ids)
    if not is_train.any():
        return np.full(len(image_ids), np.nan)
    scorer = OODScorer().fit(features[is_train])
    scores = np.empty(len(image_ids))
    own = scorer.training_scores()
    if own is None:  # the index holds a sample of the training images: search again
        own = scorer.score(features[is_train], exclude_self=True)
    scores[is_train] = own
    if (~is_train).any():
        scores[~is_train] = scorer.score(features[~is_train])
    return scores


def _nan_to_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


@handler("predict")
def predict_job(context) -> dict[str, Any]:
    """Score every stored image with a version and store one Prediction row per image.

    The result says how many rows were added and how many seconds each stage took: the
    network (pixel cache to features and p_fake), the K-fold out-of-sample scores, the
    out-of-distribution scores and the database writes.
    """
    stopwatch = Stopwatch()
    version = versions.get_version(context.params.get("version"))
    rows = db.session.execute(select(Image.id, Image.sha256).order_by(Image.id)).all()
    image_ids = [row.id for row in rows]
    context.log(f"scoring {len(image_ids)} images with {version.name}")
    get_predictor(version, log=context.log)  # loaded (and measured, the first time) up front

    def progress(done: int, total: int) -> None:
        context.check_cancelled()
        context.progress(stage="network", done=done, total=total, fraction=done / max(total, 1))

    output = network_outputs(version, image_ids, progress)
    np.savez(features_path(version), ids=np.asarray(image_ids), features=output["features"])
    stopwatch.lap("network")
    context.progress(stage="out-of-sample")
    folds = int(current_app.config["KFOLD"])
    oos, issues = out_of_sample_scores(image_ids, output["features"], folds)
    held_out = held_out_network_scores(version, image_ids, output["p_fake"], oos)
    if held_out is not None:
        oos, issues = held_out
    stopwatch.lap("out_of_sample")
    context.progress(stage="out-of-distribution")
    ood = ood_scores(version, image_ids, output["features"])
    stopwatch.lap("out_of_distribution")
    scored = _store_predictions(version, rows, output, oos, issues, ood)
    stopwatch.lap("write")
    context.progress(stage="done", fraction=1.0)
    return {**scored, "version": version.name, "seconds": stopwatch.seconds}


def _store_predictions(version, rows, output, oos, issues, ood) -> dict[str, int]:
    """Insert a Prediction row for each image this version has not scored yet."""
    existing = set(
        db.session.scalars(
            select(Prediction.image_id).where(Prediction.model_version_id == version.id)
        )
    )
    new_rows = [
        {
            "image_id": row.id,
            "model_version_id": version.id,
            "p_fake": float(output["p_fake"][i]),
            "p_fake_raw": float(output["p_fake_raw"][i]),
            "verdict": "fake" if output["p_fake"][i] >= version.threshold else "real",
            "oos_p_fake": _nan_to_none(oos[i]),
            "label_issue_score": _nan_to_none(issues[i]),
            "ood_score": _nan_to_none(ood[i]),
            "audit_key": audit_key(row.sha256, version.name),
        }
        for i, row in enumerate(rows)
        if row.id not in existing
    ]
    for batch in chunks(new_rows, 5000):
        db.session.execute(insert(Prediction), list(batch))
    db.session.commit()
    return {"scored": len(new_rows), "already_scored": len(existing)}
