"""The admin overview's figures: how much there is, and how much people and the model saw."""

from __future__ import annotations

from sqlalchemy import func, select

from ...extensions import db
from ...models import Dataset, Image, ModelVersion, Prediction, ReviewDecision


def _count(statement) -> int:
    return db.session.scalar(statement) or 0


def standing_decisions() -> int:
    """Decisions that stand, as reviewers count theirs: undo rows, the decisions they reverted
    and skips do not count."""
    undone = select(ReviewDecision.reverts_id).where(ReviewDecision.reverts_id.is_not(None))
    return _count(
        select(func.count(ReviewDecision.id)).where(
            ReviewDecision.choice.not_in(("undo", "skip")), ReviewDecision.id.not_in(undone)
        )
    )


def counts(active: ModelVersion | None) -> dict[str, int]:
    """Images, datasets, labelled images, standing decisions, and images ``active`` scored."""
    scored = 0
    if active is not None:
        scored = _count(
            select(func.count(Prediction.id)).where(Prediction.model_version_id == active.id)
        )
    return {
        "images": _count(select(func.count(Image.id))),
        "datasets": _count(select(func.count(Dataset.id))),
        "labelled": _count(select(func.count(Image.id)).where(Image.label != "unknown")),
        "decisions": standing_decisions(),
        "scored": scored,
    }
