"""Versions side by side, measured from their stored predictions on the same images.

Two yardsticks: the fixed test split (the test split of every trainable labelled image) and
the reviewed images (at least one standing decision, judged by their effective labels). Images
any compared version trained or calibrated on are left out of both (a head refit trains on
reviewed labels, and measuring it there would flatter it), and each version is measured on the
images every scored version has a prediction for, so the numbers compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import aliased

from ...extensions import db
from ...models import Image, ModelVersion, Prediction
from ..records.labels import effective_labels, reviewed_image_ids
from ..records.versions import training_labels, training_labels_path
from .trainset import CLASS_INDEX, select_training_set

IN_CHUNK = 5000


@dataclass
class Yardstick:
    """A named set of images with their class indices (0 real, 1 fake)."""

    name: str
    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    # Images left out because a compared version trained or calibrated on them.
    excluded: int = 0
    # Versions whose training images are not on record (they may have seen some of these).
    unknown: list[str] = field(default_factory=list)


def held_out(yardstick: Yardstick, versions: Sequence[ModelVersion]) -> Yardstick:
    """``yardstick`` without the images any of ``versions`` trained or calibrated on, so a
    version is never measured on what it has seen."""
    seen: set[int] = set()
    unknown = []
    for version in versions:
        if not training_labels_path(version.name).exists():
            unknown.append(version.name)
            continue
        saved = training_labels(version)
        seen.update(saved["train_ids"].tolist())
        seen.update(saved["val_ids"].tolist())
    kept = [(i, y) for i, y in zip(yardstick.ids, yardstick.labels, strict=True) if i not in seen]
    return Yardstick(
        yardstick.name,
        [i for i, _ in kept],
        [y for _, y in kept],
        excluded=len(yardstick.ids) - len(kept),
        unknown=unknown,
    )


def fixed_test_split() -> Yardstick:
    """The test split of all trainable labelled images (never trained on by any version)."""
    test = select_training_set(None).test
    return Yardstick("test split", list(test.ids), list(test.labels))


def reviewed_images() -> Yardstick:
    """Reviewed images whose effective label is real or fake."""
    ids = reviewed_image_ids()
    labels = effective_labels(ids) if ids else {}
    kept = [i for i in ids if labels.get(i) in CLASS_INDEX]
    return Yardstick("reviewed images", kept, [CLASS_INDEX[labels[i]] for i in kept])


def stored_scores(version: ModelVersion, image_ids: Sequence[int]) -> dict[int, float]:
    """The version's stored calibrated p_fake for those of ``image_ids`` it has scored."""
    scores: dict[int, float] = {}
    for start in range(0, len(image_ids), IN_CHUNK):
        chunk = list(image_ids[start : start + IN_CHUNK])
        rows = db.session.execute(
            select(Prediction.image_id, Prediction.p_fake).where(
                Prediction.model_version_id == version.id, Prediction.image_id.in_(chunk)
            )
        )
        scores.update({row.image_id: row.p_fake for row in rows})
    return scores


def measure(versions: Sequence[ModelVersion], yardstick: Yardstick) -> dict[str, Any]:
    """Metrics, ROC and reliability of each version on the images all scored versions share.

    A version that scored none of the images is reported as None (not scored yet) and does
    not shrink the common set for the others.
    """
    from model.metrics import classification_metrics, reliability_curve, roc_points

    scores = {version.name: stored_scores(version, yardstick.ids) for version in versions}
    scored = [name for name, found in scores.items() if found]
    common = [i for i in yardstick.ids if all(i in scores[name] for name in scored)]
    label_of = dict(zip(yardstick.ids, yardstick.labels, strict=True))
    labels = [label_of[i] for i in common]
    results: dict[str, Any] = {}
    for version in versions:
        if version.name not in scored or not common:
            results[version.name] = None
            continue
        p_fake = [scores[version.name][i] for i in common]
        metrics = classification_metrics(labels, p_fake, version.threshold)
        metrics["roc"] = roc_points(labels, p_fake)
        if metrics["roc"] is not None:
            metrics["roc"]["operating_point"] = metrics["operating_point"]
        metrics["reliability"] = reliability_curve(labels, p_fake)
        results[version.name] = metrics
    return {
        "name": yardstick.name,
        "n_total": len(yardstick.ids),
        "n": len(common),
        "excluded": yardstick.excluded,
        "unknown": yardstick.unknown,
        **results,
    }


def previous_version(version: ModelVersion) -> ModelVersion | None:
    """The version made just before ``version``."""
    return db.session.scalar(
        select(ModelVersion).where(ModelVersion.id < version.id).order_by(ModelVersion.id.desc())
    )


def _changes_query(version: ModelVersion, previous: ModelVersion):
    """Pairs (now, before) of predictions of the two versions that disagree on an image."""
    now, before = aliased(Prediction, name="now"), aliased(Prediction, name="before")
    query = (
        select(now, before)
        .join(
            before,
            and_(before.image_id == now.image_id, before.model_version_id == previous.id),
        )
        .where(now.model_version_id == version.id, now.verdict != before.verdict)
    )
    return query, now


def count_verdict_changes(version: ModelVersion, previous: ModelVersion | None) -> int | None:
    """How many images the two versions call differently (None without a previous version)."""
    if previous is None:
        return None
    query, _ = _changes_query(version, previous)
    return db.session.scalar(select(func.count()).select_from(query.subquery())) or 0


def verdict_shift(candidate: ModelVersion, current: ModelVersion | None) -> dict[str, int]:
    """How activating ``candidate`` instead of ``current`` changes the verdicts: images going
    real to fake and fake to real, among those both have scored (the confirmation's numbers)."""
    shift = {"real_to_fake": 0, "fake_to_real": 0}
    if current is None or current.id == candidate.id:
        return shift
    query, now = _changes_query(candidate, current)
    changes = query.subquery()
    rows = db.session.execute(
        select(changes.c.verdict, func.count()).group_by(changes.c.verdict)
    ).all()
    for verdict_now, count in rows:
        shift["real_to_fake" if verdict_now == "fake" else "fake_to_real"] += count
    return shift


def verdict_changes(
    version: ModelVersion, previous: ModelVersion, after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """A page (by image id) of the images whose verdict changed, with both calls."""
    query, now = _changes_query(version, previous)
    query = (
        query.add_columns(Image.file_name, Image.split)
        .join(Image, Image.id == now.image_id)
        .where(now.image_id > after)
        .order_by(now.image_id)
        .limit(limit)
    )
    rows = db.session.execute(query).all()
    labels = effective_labels([row[0].image_id for row in rows]) if rows else {}
    return [
        {
            "image_id": current.image_id,
            "file_name": file_name,
            "split": split,
            "label": labels.get(current.image_id),
            "before": {"verdict": earlier.verdict, "p_fake": earlier.p_fake},
            "now": {"verdict": current.verdict, "p_fake": current.p_fake},
        }
        for current, earlier, file_name, split in rows
    ]


def compare_versions() -> dict[str, Any]:
    """Everything the versions page shows, newest version first."""
    versions = list(db.session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))
    changes = {}
    for version in versions:
        previous = previous_version(version)
        changes[version.name] = {
            "previous": previous.name if previous else None,
            "count": count_verdict_changes(version, previous),
        }
    return {
        "versions": versions,
        "test": measure(versions, held_out(fixed_test_split(), versions)),
        "reviewed": measure(versions, held_out(reviewed_images(), versions)),
        "changes": changes,
    }
