"""Effective labels. Placeholder until the review branch lands: the import label."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from ..extensions import db
from ..models import Image


def effective_labels(image_ids: Sequence[int] | None = None) -> dict[int, str]:
    """Map image id to its label."""
    query = select(Image.id, Image.label)
    if image_ids is not None:
        query = query.where(Image.id.in_(list(image_ids)))
    return {row.id: row.label for row in db.session.execute(query)}
