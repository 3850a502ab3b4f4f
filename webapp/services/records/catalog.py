"""What exists, listed for a page's choices: datasets, model versions, image thumbnails.

Pages offer these as select options or link targets; the queries live here so every view asks
the same question the same way (archived datasets are left out of a reviewer's filters).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from ...extensions import db
from ...models import Dataset, Image, ModelVersion


def datasets_by_name() -> list[Dataset]:
    """Every dataset, archived ones included, by name."""
    return list(db.session.scalars(select(Dataset).order_by(Dataset.name)))


def open_dataset_names() -> list[str]:
    """The names of the datasets not archived, by name: what a reviewer may filter by."""
    query = select(Dataset.name).where(Dataset.archived_at.is_(None)).order_by(Dataset.name)
    return list(db.session.scalars(query))


def versions_newest_first() -> list[ModelVersion]:
    """Every model version, the newest first."""
    return list(db.session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def thumbnail_hashes(image_ids: Sequence[int]) -> dict[int, str]:
    """The SHA-256 (the thumbnail's name) of each of ``image_ids`` that exists."""
    if not image_ids:
        return {}
    rows = db.session.execute(select(Image.id, Image.sha256).where(Image.id.in_(image_ids)))
    return {image_id: sha256 for image_id, sha256 in rows}
