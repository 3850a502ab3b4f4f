"""Storing the evidence an import computed: one ``image_evidence`` row per new image.

Called by the import's batch writer inside its transaction, so an image and its evidence are
committed together. The "camera metadata and a near duplicate reviewed REAL" claim needs the
stored images, so it is decided here rather than in the worker process.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

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


def missing_ids(limit: int | None = None) -> list[int]:
    """Images that have no evidence row yet (imported before evidence existed, or with it off)."""
    from ...models import Image

    statement = (
        select(Image.id)
        .outerjoin(ImageEvidence, ImageEvidence.image_id == Image.id)
        .where(ImageEvidence.image_id.is_(None))
        .order_by(Image.id)
    )
    return list(db.session.scalars(statement.limit(limit) if limit else statement))


def backfill(progress=None, batch: int = 200) -> dict[str, int]:
    """Compute and store the evidence of every image that has none, from its stored original;
    a missing original is counted, never fatal. Committed a batch at a time, so it can be
    stopped and run again."""
    from ...models import Image
    from ..storage import original_path
    from . import safe_compute

    todo = missing_ids()
    done = missing = 0
    for start in range(0, len(todo), batch):
        pairs = []
        for image in db.session.scalars(
            select(Image).where(Image.id.in_(todo[start : start + batch]))
        ):
            path = original_path(image)
            if not path.is_file():
                missing += 1
                continue
            pairs.append((image.id, safe_compute(path.read_bytes())))
        done += store(pairs)
        db.session.commit()
        if progress is not None:
            progress(min(start + batch, len(todo)), len(todo))
    return {"computed": done, "missing_original": missing, "images": len(todo)}
