"""The admin API's JSON form of each row: images, predictions, decisions, model versions.

One function per shape, so a route and its OpenAPI schema (:mod:`.schemas`) describe the same
fields; the review desk's own decision JSON (:func:`..review.decisions.decision_dict`) is a
different, smaller shape for the desk's script.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...models import Image, ModelVersion, Prediction, ReviewDecision, User
from ..review import blind_review


def iso(moment) -> str | None:
    """A UTC moment as ISO 8601 with a Z, or None."""
    return moment.isoformat() + "Z" if moment else None


def image_dict(image: Image, label: str) -> dict[str, Any]:
    """The JSON form of an image."""
    return {
        "id": image.id,
        "sha256": image.sha256,
        "file_name": image.file_name,
        "dataset": image.dataset.name,
        "split": image.split,
        "format": image.format,
        "width": image.width,
        "height": image.height,
        "import_label": image.label,
        "label": label,
        "created_at": iso(image.created_at),
    }


def prediction_dict(prediction: Prediction, version_name: str) -> dict[str, Any]:
    """The JSON form of a prediction."""
    return {
        "image_id": prediction.image_id,
        "version": version_name,
        "p_fake": prediction.p_fake,
        "p_fake_raw": prediction.p_fake_raw,
        "verdict": prediction.verdict,
        "oos_p_fake": prediction.oos_p_fake,
        "label_issue_score": prediction.label_issue_score,
        "ood_score": prediction.ood_score,
        "created_at": iso(prediction.created_at),
    }


def decision_dict(decision: ReviewDecision, version_names: dict[int, str]) -> dict[str, Any]:
    """The JSON form of a review decision."""
    return {
        "id": decision.id,
        "image_id": decision.image_id,
        "reviewer": decision.user.username,
        "choice": decision.choice,
        "note": decision.note,
        "label_before": decision.label_before,
        "version": version_names.get(decision.model_version_id),
        "reverts_id": decision.reverts_id,
        "at": iso(decision.created_at),
    }


def visible_decisions(
    viewer: User, decisions: Iterable[ReviewDecision], version_names: dict[int, str]
) -> list[dict[str, Any]]:
    """Decisions as ``viewer`` may see them (blind review hides other reviewers' votes on
    images still waiting for reviews)."""
    entries = [decision_dict(d, version_names) | {"user_id": d.user_id} for d in decisions]
    shown = blind_review.redact_decisions(viewer, entries)
    return [{key: value for key, value in entry.items() if key != "user_id"} for entry in shown]


def version_dict(version: ModelVersion) -> dict[str, Any]:
    """The JSON form of a model version."""
    return {
        "name": version.name,
        "is_active": version.is_active,
        "kind": version.kind,
        "created_at": iso(version.created_at),
        "activated_at": iso(version.activated_at),
        "architecture": version.architecture,
        "image_size": version.image_size,
        "init_weights": version.init_weights,
        "temperature": version.temperature,
        "threshold": version.threshold,
        "preset": version.preset,
        "epochs": version.epochs,
        "n_train": version.n_train,
        "labels_changed": version.labels_changed,
        "train_set_sha256": version.train_set_sha256,
        "metrics": version.metrics,
        "history": version.history,
        "job_id": version.job_id,
    }
