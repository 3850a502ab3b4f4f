"""Model versions: naming, the checkpoint folder, activation and rollback."""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from sqlalchemy import func, select, update

from ..extensions import db
from ..models import ModelVersion, utcnow


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
            raise ValueError("no active model version: train one first")
        return version
    version = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name))
    if version is None:
        raise ValueError(f"unknown model version {name!r}")
    return version


def activate(version: ModelVersion) -> ModelVersion:
    """Make ``version`` the only active one (promotion and rollback are the same act)."""
    db.session.execute(update(ModelVersion).values(is_active=False))
    version.is_active = True
    version.activated_at = utcnow()
    db.session.commit()
    return version


def training_ids_path(version_name: str) -> Path:
    """The ids of the images a version was trained on, saved beside its checkpoint."""
    return models_dir() / f"{version_name}.train_ids.npy"


def training_ids(version: ModelVersion):
    """The ids of the images ``version`` was trained on (empty if unknown)."""
    import numpy as np

    path = training_ids_path(version.name)
    return np.load(path) if path.exists() else np.zeros(0, dtype=np.int64)
