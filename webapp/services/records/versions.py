"""Model versions: naming, the checkpoint folder, activation and rollback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flask import current_app
from sqlalchemy import func, select, update

from ...extensions import db
from ...models import ModelVersion, utcnow
from .labels import reviewed_image_ids
from .lookup import StateConflict, UnknownName

# The names of model.config.TrainConfig's presets, here so pages can offer them without loading
# PyTorch (a test checks the two lists agree).
TRAIN_PRESETS = ("seed", "demo", "cifake", "cifake-robust", "photos")


def models_dir() -> Path:
    """Where checkpoints live, inside the instance folder."""
    path = Path(current_app.instance_path) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def next_version_name() -> str:
    """v1, v2, ... in creation order."""
    count = db.session.scalar(select(func.count(ModelVersion.id))) or 0
    name = f"v{count + 1}"
    while db.session.scalar(select(ModelVersion.id).where(ModelVersion.name == name)):
        count += 1
        name = f"v{count + 1}"
    return name


def active_version() -> ModelVersion | None:
    """The version whose scores drive the queue, or None before the first training."""
    return db.session.scalar(select(ModelVersion).where(ModelVersion.is_active.is_(True)))


def get_version(name: str | None) -> ModelVersion:
    """The named version, or the active one when ``name`` is None; ValueError when absent."""
    if name is None:
        version = active_version()
        if version is None:
            raise StateConflict("no active model version: train one first")
        return version
    version = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name))
    if version is None:
        raise UnknownName(f"unknown model version {name!r}")
    return version


def activate(version: ModelVersion) -> ModelVersion:
    """Make ``version`` the only active one (promotion and rollback are the same act)."""
    db.session.execute(update(ModelVersion).values(is_active=False))
    version.is_active = True
    version.activated_at = utcnow()
    db.session.commit()
    return version


def training_labels_path(version_name: str) -> Path:
    """The (image id, class index) pairs a version was trained on, saved beside its checkpoint."""
    return models_dir() / f"{version_name}.labels.npz"


def save_training_labels(version_name: str, trainset) -> None:
    """Record which images, with which labels, went into train and val."""
    train_ids, train_labels = trainset.train.as_arrays()
    val_ids, val_labels = trainset.val.as_arrays()
    np.savez(
        training_labels_path(version_name),
        train_ids=train_ids,
        train_labels=train_labels,
        val_ids=val_ids,
        val_labels=val_labels,
    )


def training_labels(version: ModelVersion) -> dict[str, np.ndarray]:
    """The arrays saved by :func:`save_training_labels` (empty arrays when unknown)."""
    path = training_labels_path(version.name)
    if not path.exists():
        empty = np.zeros(0, dtype=np.int64)
        return {key: empty for key in ("train_ids", "train_labels", "val_ids", "val_labels")}
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def training_ids(version: ModelVersion) -> np.ndarray:
    """The ids of the images ``version`` was trained on (empty if unknown)."""
    return training_labels(version)["train_ids"]


def _test_accuracy(version: ModelVersion) -> float | None:
    metrics = (version.metrics or {}).get("test") or {}
    return metrics.get("accuracy")


def is_better(candidate: ModelVersion, current: ModelVersion | None) -> bool:
    """Whether ``candidate`` beats ``current`` on test accuracy (any version beats none)."""
    if current is None:
        return True
    new, old = _test_accuracy(candidate), _test_accuracy(current)
    return new is not None and (old is None or new > old)


def activate_if_due(candidate: ModelVersion, auto_activate_better: bool) -> bool:
    """Activate the first version always; a later one only when the setting allows and it is
    better. Returns whether ``candidate`` was activated; the audit trail records it."""
    from . import audit_trail

    current = active_version()
    if current is None or (auto_activate_better and is_better(candidate, current)):
        reason = (
            "the first version"
            if current is None
            else f"better test accuracy than {current.name} (auto-activation is on)"
        )
        audit_trail.record(
            "activation",
            candidate.name,
            f"{candidate.name} activated instead of {current.name if current else 'none'}: "
            f"{reason}",
            user=audit_trail.AUTO_ACTOR,
        )
        activate(candidate)
        return True
    return False


def training_data(version: ModelVersion) -> dict[str, int] | None:
    """What ``version`` was fitted on: images in train and val, by class, and how many of its
    training images carried a reviewer's label (None when its training labels are not on
    record)."""
    if not training_labels_path(version.name).exists():
        return None
    saved = training_labels(version)
    train = saved["train_ids"].tolist()
    reviewed = set(reviewed_image_ids())
    return {
        "train": len(train),
        "val": int(saved["val_ids"].size),
        "real": int((saved["train_labels"] == 0).sum()),
        "fake": int((saved["train_labels"] == 1).sum()),
        "reviewed": sum(1 for image_id in train if image_id in reviewed),
    }


DERIVED_KINDS = ("head", "calib")


def lineage(version: ModelVersion) -> str:
    """Where a version comes from, in a sentence: a head refit or a recalibration names its
    parent."""
    parent = version.parent
    if version.kind == "head" and parent is not None:
        return (
            f"Head refit of {parent.name}: {parent.name}'s network (which "
            f"started from {version.init_weights} weights) with a new classifier head fitted on "
            "its cached features."
        )
    if version.kind == "calib" and parent is not None:
        dataset = (version.train_args or {}).get("calibrated_on") or "a dataset"
        return (
            f"Recalibration of {parent.name} on {dataset}: {parent.name}'s network unchanged, "
            "with its temperature and threshold refitted there."
        )
    after = f", after {parent.name}" if parent is not None else ""
    return f"Full training from {version.init_weights} weights{after}."


def curves_note(version: ModelVersion) -> str | None:
    """Why a version derived from another (head refit, recalibration) has no training curves,
    naming the parent whose network it reuses; None for a version trained in epochs."""
    if version.kind not in DERIVED_KINDS:
        return None
    parent = version.parent.name if version.parent is not None else "its parent"
    what = "a head refit" if version.kind == "head" else "a recalibration"
    how = (
        "fitted in one pass on cached features"
        if version.kind == "head"
        else "only its temperature and threshold were refitted"
    )
    return (
        f"No training curves: {version.name} is {what} of {parent} ({how}); the curves of the "
        f"network it reuses are {parent}'s."
    )


def register(name: str, path, **fields) -> ModelVersion:
    """Add the row of the version whose checkpoint was just saved as ``name`` at ``path``, with
    what its training measured (temperature, threshold, metrics and the rest of ``fields``);
    committed, then activated when auto-activation says it is due (the first version always).
    Every version, trained in full or derived from a parent, is registered here."""
    version = ModelVersion(name=name, checkpoint_path=str(path), **fields)
    db.session.add(version)
    db.session.commit()
    activate_if_due(version, current_app.config["AUTO_ACTIVATE_BETTER"])
    return version


def register_child(parent: ModelVersion, name: str, kind: str, path, **fields) -> ModelVersion:
    """Register a version derived from ``parent`` without retraining its backbone (a head refit,
    a recalibration): same size and starting weights, the parent's training arguments plus
    ``train_args``.

    It trains no epochs, so it stores no training history: the parent's curves are the
    parent's, and the Versions page says so instead of showing them as the child's.
    """
    train_args = fields.pop("train_args", {})
    return register(
        name,
        path,
        kind=kind,
        parent_id=parent.id,
        image_size=parent.image_size,
        init_weights=parent.init_weights,
        train_args={**(parent.train_args or {}), **train_args},
        history=None,
        **fields,
    )
