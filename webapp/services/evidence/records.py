"""Reading stored evidence back: for one image (the review desk's panel, the check page) and for
many (reports), in the short form every consumer shows: per kind its status, weight and summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from ...extensions import db
from ...models import ImageEvidence
from . import TITLES, phash, similar

PANEL_KINDS = ("credentials", "metadata", "watermark", "phash")
# The report columns: one per kind (its summary) and the strong claim.
REPORT_COLUMNS = (
    "evidence_claims",
    "evidence_credentials",
    "evidence_metadata",
    "evidence_watermark",
    "evidence_near_duplicates",
)


def short(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """A finding without its details: what the panels and reports show."""
    if not item:
        return None
    return {key: item.get(key) for key in ("status", "weight", "summary")}


def for_image(image_id: int, with_similar: bool = True) -> dict[str, Any] | None:
    """The stored evidence of one image and its near duplicates; None when it has none."""
    row = db.session.get(ImageEvidence, image_id)
    if row is None:
        return None
    near = []
    if with_similar and row.phash is not None:
        near = similar.find(phash.from_signed(row.phash), exclude=image_id, limit=5)
    return {
        "claims": row.claims,
        "items": {kind: short(row.findings.get(kind)) for kind in PANEL_KINDS},
        "titles": {kind: TITLES[kind] for kind in PANEL_KINDS},
        "similar": near,
    }


def for_images(image_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The report columns of each image that has evidence (``REPORT_COLUMNS``)."""
    ids = list(dict.fromkeys(image_ids))
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        for row in db.session.scalars(
            select(ImageEvidence).where(ImageEvidence.image_id.in_(chunk))
        ):
            found[row.image_id] = columns_of(row)
    return found


def columns_of(row: ImageEvidence) -> dict[str, Any]:
    """One image's evidence as report columns; near duplicates counted among stored images."""
    near = similar.candidates(phash.from_signed(row.phash), row.image_id) if row.phash else []
    summary = {kind: (row.findings.get(kind) or {}).get("summary", "") for kind in PANEL_KINDS}
    return {
        "evidence_claims": row.claims or "",
        "evidence_credentials": summary["credentials"],
        "evidence_metadata": summary["metadata"],
        "evidence_watermark": summary["watermark"],
        "evidence_near_duplicates": ",".join(str(image_id) for image_id, _ in near),
    }
