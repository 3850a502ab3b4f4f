"""The check job: score one checked image with the active version, in the job worker.

The network (and its out-of-distribution index over the version's training features) is loaded
once per worker process and kept, so a check costs one forward pass and a neighbour search. A
Prediction row is added when the version has not scored the image, like any scoring run would.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from flask import current_app
from sqlalchemy import select

from ...extensions import db
from ...jobs import handler
from ...models import Check, Image, ModelVersion, Prediction
from ..records import versions
from ..training import scoring
from . import threshold_of, verdict_for

_ood_index: dict[tuple, Any] = {}
_ood_lock = threading.Lock()


def ood_scorer(version: ModelVersion):
    """The OOD index over ``version``'s training features, built once per process and again
    when its scoring job rewrites them (None when the version stored no features)."""
    from model.scores import OODScorer

    path = scoring.features_path(version)
    key = (version.id, version.name, path.stat().st_mtime_ns if path.exists() else None)
    with _ood_lock:
        if key not in _ood_index:
            _ood_index.clear()
            _ood_index[key] = None
            if key[2] is not None:
                ids, features = scoring.load_features(version)
                train = np.isin(ids, versions.training_ids(version))
                if train.sum() >= 2:
                    _ood_index[key] = OODScorer().fit(features[train])
        return _ood_index[key]


def score(version: ModelVersion, image_id: int) -> tuple[float, float | None]:
    """(calibrated p_fake, OOD score) of one image, stored as a Prediction when new."""
    existing = db.session.scalar(
        select(Prediction).where(
            Prediction.model_version_id == version.id, Prediction.image_id == image_id
        )
    )
    if existing is not None:
        return existing.p_fake, existing.ood_score
    output = scoring.run_network(version, [image_id])
    scorer = ood_scorer(version)
    ood = float(scorer.score(output["features"])[0]) if scorer is not None else None
    p_fake = float(output["p_fake"][0])
    image = db.session.get(Image, image_id)
    db.session.add(
        Prediction(
            image_id=image_id,
            model_version_id=version.id,
            p_fake=p_fake,
            p_fake_raw=float(output["p_fake_raw"][0]),
            verdict="fake" if p_fake >= 0.5 else "real",
            ood_score=ood,
            audit_key=scoring.audit_key(image.sha256, version.name),
        )
    )
    db.session.commit()
    return p_fake, ood


def result_for(check: Check) -> dict[str, Any]:
    """What the model says about the check's image (``version`` None: no active version)."""
    version = versions.active_version()
    if version is None:
        return {"version": None, "p_fake": None, "verdict": "uncertain", "threshold": None}
    p_fake, ood = score(version, check.image_id)
    threshold = threshold_of(version)
    out = ood is not None and ood >= float(current_app.config["OOD_THRESHOLD"])
    return {
        "version": version.name,
        "p_fake": round(p_fake, 6),
        "threshold": threshold,
        "verdict": verdict_for(p_fake, threshold).word,
        "ood_score": None if ood is None else round(ood, 6),
        "out_of_distribution": out,
    }


def run_check(check_id: int) -> dict[str, Any]:
    """Score a check and store its result; used by the job and by ``flask check``."""
    check = db.session.get(Check, check_id)
    if check is None:
        raise ValueError(f"no check {check_id}")
    try:
        check.result = result_for(check)
    except Exception as error:
        db.session.rollback()
        check = db.session.get(Check, check_id)
        check.error = f"{type(error).__name__}: {error}"[:2000]
        db.session.commit()
        raise
    db.session.commit()
    return check.result


@handler("check")
def check_job(context) -> dict[str, Any]:
    """Score the check named in the job's parameters."""
    return run_check(int(context.params["check_id"]))
