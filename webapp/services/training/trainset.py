"""Which images a training run uses, with which labels, in which split.

Labels are the effective labels (reviewers' consensus, else the import label); images with no
usable label, or in evaluation-only datasets, are never trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from ...extensions import db
from ...models import Dataset, DatasetImage, Image, ModelVersion, Split
from ..records import versions

CLASS_INDEX = {"real": 0, "fake": 1}


@dataclass
class LabelledSplit:
    """Image ids and their class indices (0 real, 1 fake) for one split."""

    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.ids, dtype=np.int64), np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class TrainingSet:
    """The train, val and test splits a run uses."""

    train: LabelledSplit
    val: LabelledSplit
    test: LabelledSplit
    datasets: list[str]

    def sha256(self) -> str:
        """A fingerprint of the (image, label) pairs in train and val."""
        digest = hashlib.sha256()
        for name, part in (("train", self.train), ("val", self.val)):
            pairs = sorted(zip(part.ids, part.labels, strict=True))
            digest.update(name.encode() + np.asarray(pairs, dtype=np.int64).tobytes())
        return digest.hexdigest()

    def label_counts(self) -> dict[str, dict[str, int]]:
        names = {index: name for name, index in CLASS_INDEX.items()}
        return {
            split: {names[k]: part.labels.count(k) for k in (0, 1)}
            for split, part in (("train", self.train), ("val", self.val), ("test", self.test))
        }


def effective_labels_for(image_ids: Sequence[int] | None = None) -> dict[int, str]:
    """Effective labels: reviewers' consensus where there is one, else the import label."""
    from ..records import labels

    return labels.effective_labels(image_ids)


def trainable_image_query(dataset_names: Sequence[str] | None = None):
    """Images in the named (or all) datasets that are neither evaluation-only nor archived."""
    query = select(Image.id, Image.split).where(
        ~Image.id.in_(
            select(DatasetImage.image_id)
            .join(Dataset, Dataset.id == DatasetImage.dataset_id)
            .where(Dataset.evaluation_only.is_(True) | Dataset.archived_at.is_not(None))
        )
    )
    if dataset_names:
        query = query.where(
            Image.id.in_(
                select(DatasetImage.image_id)
                .join(Dataset, Dataset.id == DatasetImage.dataset_id)
                .where(Dataset.name.in_(list(dataset_names)))
            )
        )
    return query.order_by(Image.id)


def select_training_set(dataset_names: Sequence[str] | None = None) -> TrainingSet:
    """Collect the labelled, trainable images of the named datasets (all when None)."""
    if dataset_names:
        known = set(db.session.scalars(select(Dataset.name).where(Dataset.name.in_(dataset_names))))
        missing = sorted(set(dataset_names) - known)
        if missing:
            raise ValueError(f"unknown dataset(s): {', '.join(missing)}")
    rows = db.session.execute(trainable_image_query(dataset_names)).all()
    labels = effective_labels_for(None)
    parts = {Split.TRAIN: LabelledSplit(), Split.VAL: LabelledSplit(), Split.TEST: LabelledSplit()}
    for row in rows:
        label = labels.get(row.id)
        if label in CLASS_INDEX:
            parts[Split(row.split)].ids.append(row.id)
            parts[Split(row.split)].labels.append(CLASS_INDEX[label])
    return TrainingSet(
        parts[Split.TRAIN], parts[Split.VAL], parts[Split.TEST], list(dataset_names or [])
    )


def labelled_images(dataset_name: str) -> LabelledSplit:
    """Every image of a dataset that has a real/fake effective label (evaluation uses these)."""
    dataset = db.session.scalar(select(Dataset).where(Dataset.name == dataset_name))
    if dataset is None:
        raise ValueError(f"unknown dataset {dataset_name!r}")
    ids = list(
        db.session.scalars(
            select(DatasetImage.image_id)
            .where(DatasetImage.dataset_id == dataset.id)
            .order_by(DatasetImage.image_id)
        )
    )
    labels = effective_labels_for(ids)
    part = LabelledSplit()
    for image_id in ids:
        if labels.get(image_id) in CLASS_INDEX:
            part.ids.append(image_id)
            part.labels.append(CLASS_INDEX[labels[image_id]])
    return part


def labels_changed_since(version: ModelVersion | None) -> dict[str, int] | None:
    """How the effective labels of trainable images moved since ``version`` was trained.

    ``changed``: images it trained or validated on whose label is now different (or now
    unsure / unknown); ``added``: labelled trainable images it never saw.
    """
    if version is None:
        return None
    from ..training.trainset import select_training_set

    saved = versions.training_labels(version)
    before = dict(
        zip(
            np.concatenate([saved["train_ids"], saved["val_ids"]]).tolist(),
            np.concatenate([saved["train_labels"], saved["val_labels"]]).tolist(),
            strict=True,
        )
    )
    current = select_training_set((version.train_args or {}).get("datasets") or None)
    now = dict(
        zip(
            current.train.ids + current.val.ids,
            current.train.labels + current.val.labels,
            strict=True,
        )
    )
    changed = sum(1 for image_id, label in before.items() if now.get(image_id) != label)
    added = sum(1 for image_id in now if image_id not in before)
    return {"changed": changed, "added": added, "total": changed + added}
