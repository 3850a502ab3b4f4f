"""Storing the evidence an import computed: one ``image_evidence`` row per new image.

Called by the import's batch writer inside its transaction, so an image and its evidence are
committed together. The "camera metadata and a near duplicate reviewed REAL" claim needs the
stored images, so it is decided here rather than in the worker process.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from ...extensions import db
from ...models import ImageEvidence, utcnow
from . import claims_of, phash, similar


def evidence_row(image_id: int, computed: dict[str, Any]) -> dict[str, Any]:
    """The ``image_evidence`` row for what :func:`compute` returned."""
    hash_value = computed.get("phash")
    row: dict[str, Any] = {
        "image_id": image_id,
        "phash": phash.to_signed(hash_value) if hash_value is not None else None,
        "claims": computed.get("claims"),
        "findings": computed["findings"],
        "computed_at": utcnow(),
    }
    bands = phash.bands(hash_value) if hash_value is not None else [None] * phash.BANDS
    row.update({f"phash_band{i}": band for i, band in enumerate(bands)})
    if row["claims"] is None and _has_camera(computed):
        near = similar.find(hash_value, exclude=image_id)
        row["claims"] = claims_of(computed["findings"], near)
    return row


def _has_camera(computed: dict[str, Any]) -> bool:
    metadata = computed["findings"].get("metadata") or {}
    return bool(metadata.get("details", {}).get("camera"))


def store(pairs: list[tuple[int, dict[str, Any] | None]]) -> int:
    """Insert the evidence of ``(image id, computed)`` pairs; those without evidence are
    skipped (evidence turned off at import). Returns how many rows were written."""
    rows = [evidence_row(image_id, computed) for image_id, computed in pairs if computed]
    if rows:
        db.session.execute(insert(ImageEvidence), rows)
    return len(rows)
