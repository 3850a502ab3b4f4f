"""Writing decoded images to the database in batches, one transaction per batch.

Order within a batch, so that an interruption anywhere leaves a consistent store: the originals
and thumbnails are already on disk (workers wrote them), the pixel-cache rows are written next,
and the rows are committed last. Inserts ignore rows that a concurrent import committed first
(unique SHA-256), and such images are treated as duplicates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import JSON, Boolean, DateTime, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ...extensions import db
from ...models import Dataset, DatasetImage, Image, Label, utcnow
from ..evidence.store import store as store_evidence
from .pixel_cache import PixelCache
from .report import EXAMPLES, ImportReport
from .worker import Outcome

KNOWN_LABELS = (Label.REAL, Label.FAKE)


@dataclass
class Item:
    """One decoded (or already stored) file with the label and split its import gives it."""

    index: int
    path: str
    outcome: Outcome
    label: str
    label_source: str
    split: str


def insert_ignoring_conflicts(table: Table, rows: list[dict], *conflict_columns: str) -> None:
    """``INSERT ... ON CONFLICT (columns) DO NOTHING`` of many rows.

    On SQLite (the default) the rows go straight to the driver's executemany: SQLAlchemy's
    per-row parameter processing cost more than the insert itself (about 60 us a row, a third
    of the main process's work on small images). Values are stored as SQLAlchemy stores them.
    """
    if not rows:
        return
    if db.engine.dialect.name != "sqlite":
        dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table).on_conflict_do_nothing(index_elements=conflict_columns)
        # Concurrent imports wait on each other's uncommitted rows with the same key; taking the
        # keys in one order everywhere keeps two such waits from becoming a deadlock.
        db.session.execute(
            statement, sorted(rows, key=lambda row: [row[c] for c in conflict_columns])
        )
        return
    columns = list(rows[0])
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(conflict_columns)}) DO NOTHING"
    )
    special = [
        (position, converter)
        for position, name in enumerate(columns)
        if (converter := _sqlite_converter(table.c[name].type)) is not None
    ]
    values = []
    for row in rows:
        record = [row[name] for name in columns]
        for position, converter in special:
            if record[position] is not None:
                record[position] = converter(record[position])
        values.append(tuple(record))
    db.session.connection().exec_driver_sql(sql, values)


def _sqlite_datetime(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_converter(column_type):
    """What SQLAlchemy's SQLite dialect stores for a value of this column type (None: as is)."""
    if isinstance(column_type, DateTime):
        return lru_cache(maxsize=4)(_sqlite_datetime)  # a batch shares one timestamp
    if isinstance(column_type, JSON):
        return json.dumps
    if isinstance(column_type, Boolean):
        return int
    return None


class BatchWriter:
    """Collects items and writes them a batch at a time; see the module docstring."""

    def __init__(self, dataset: Dataset, import_id: int, report: ImportReport, cache: PixelCache):
        self.dataset_id = dataset.id
        self.evaluation_only = dataset.evaluation_only
        self.import_id = import_id
        self.report = report
        self.cache = cache
        self.pending: list[Item] = []
        self.redo: list[int] = []  # indices of stored files that must be decoded after all

    def add(self, item: Item) -> None:
        """Queue an item; rejected ones go straight to the report."""
        if item.outcome.reason is not None:
            self.report.reject(item.path, item.outcome.reason)
        else:
            self.pending.append(item)

    def flush(self) -> None:
        """Write the queued items in one transaction."""
        items, self.pending = self.pending, []
        if not items:
            return
        stored = self._existing({item.outcome.sha256 for item in items})
        new, duplicates = self._classify(items, stored)
        inserted = self._insert_images(new)
        store_evidence(
            [(image_id, item.outcome.meta.get("evidence")) for image_id, item in inserted.values()]
        )
        for item in new:
            if item.outcome.sha256 not in inserted:  # a concurrent import got there first
                duplicates.append(item)
        stored.update(self._existing({i.outcome.sha256 for i in duplicates} - stored.keys()))
        stored.update({sha: (image_id, item.label) for sha, (image_id, item) in inserted.items()})
        self._write_cache(inserted, duplicates, stored)
        self._record_labels(duplicates, stored)
        self._link(list(inserted.values()), duplicates, stored)
        db.session.commit()

    # -- steps --

    def _existing(self, sha256s: set[str]) -> dict[str, tuple[int, str]]:
        found = {}
        hashes = sorted(sha256s)
        for start in range(0, len(hashes), 5000):
            rows = db.session.execute(
                select(Image.sha256, Image.id, Image.label).where(
                    Image.sha256.in_(hashes[start : start + 5000])
                )
            )
            found.update({sha: (image_id, label) for sha, image_id, label in rows})
        return found

    def _classify(self, items: list[Item], stored: dict) -> tuple[list[Item], list[Item]]:
        new, duplicates, seen = [], [], set()
        for item in items:
            sha = item.outcome.sha256
            if sha in stored or sha in seen:
                duplicates.append(item)
            elif item.outcome.stored:  # files on disk from an interrupted run, but no row
                self.redo.append(item.index)
            else:
                seen.add(sha)
                new.append(item)
        return new, duplicates

    def _insert_images(self, new: list[Item]) -> dict[str, tuple[int, Item]]:
        if not new:
            return {}
        now = utcnow()
        rows = [self._image_row(item, now) for item in new]
        insert_ignoring_conflicts(Image.__table__, rows, "sha256")
        # Ours are the rows with our hashes and our timestamp (to the microsecond); a row a
        # concurrent import inserted first has another and makes this image a duplicate.
        mine = select(Image.sha256, Image.id).where(
            Image.sha256.in_([row["sha256"] for row in rows]), Image.created_at == now
        )
        ids = dict(db.session.execute(mine).all())
        inserted = {
            item.outcome.sha256: (ids[item.outcome.sha256], item)
            for item in new
            if item.outcome.sha256 in ids
        }
        for _image_id, item in inserted.values():
            self.report.by_label[item.label] += 1
            self.report.by_split[item.split] += 1
        self.report.imported += len(inserted)
        return inserted

    def _image_row(self, item: Item, now) -> dict:
        meta = item.outcome.meta
        return {
            "sha256": item.outcome.sha256,
            "dataset_id": self.dataset_id,
            "file_name": item.path.rsplit("/", 1)[-1][:500],
            "original_path": item.path,
            "format": meta["format"],
            "width": meta["width"],
            "height": meta["height"],
            "bytes": meta["bytes"],
            "mode": meta["mode"],
            "has_exif": meta["has_exif"],
            "exif_summary": meta["exif_summary"],
            "jpeg_quality": meta["jpeg_quality"],
            "label": item.label,
            "label_source": item.label_source,
            "label_conflict": False,
            "split": item.split,
            "created_at": now,
        }

    def _write_cache(self, inserted: dict, duplicates: list[Item], stored: dict) -> None:
        """Cache rows before the commit; duplicates get theirs if it is missing (an earlier
        run may have died between writing the row and its tag)."""
        ids, hashes, pixels = [], [], []
        for sha, (image_id, item) in inserted.items():
            ids.append(image_id)
            hashes.append(sha)
            pixels.append(item.outcome.pixels)
        unique_duplicates: dict[str, Item] = {}
        for item in duplicates:  # prefer a copy that came with its pixels
            sha = item.outcome.sha256
            if sha not in unique_duplicates or item.outcome.pixels is not None:
                unique_duplicates[sha] = item
        missing_pixels = set()
        dup_hashes = [sha for sha in unique_duplicates if sha not in inserted]
        dup_ids = [stored[sha][0] for sha in dup_hashes]
        for sha, image_id, valid in zip(
            dup_hashes, dup_ids, self.cache.valid(dup_ids, dup_hashes), strict=True
        ):
            if valid:
                continue
            pixels_in_hand = unique_duplicates[sha].outcome.pixels
            if pixels_in_hand is None:
                missing_pixels.add(sha)
                continue
            ids.append(image_id)
            hashes.append(sha)
            pixels.append(pixels_in_hand)
        if ids:
            self.cache.write(ids, hashes, pixels)
        self.redo.extend(i.index for i in duplicates if i.outcome.sha256 in missing_pixels)
        duplicates[:] = [i for i in duplicates if i.outcome.sha256 not in missing_pixels]
        self.report.duplicates += len(duplicates)
        self.report.duplicate_files.extend(item.path for item in duplicates)

    def _record_labels(self, duplicates: list[Item], stored: dict) -> None:
        """A labelled copy of an unlabelled image labels it; a copy with the other label is a
        conflict to review."""
        for item in duplicates:
            if item.label not in KNOWN_LABELS:
                continue
            image_id, stored_label = stored[item.outcome.sha256]
            if stored_label == Label.UNKNOWN:
                db.session.execute(
                    update(Image)
                    .where(Image.id == image_id, Image.label == Label.UNKNOWN)
                    .values(label=item.label, label_source=item.label_source)
                )
                stored[item.outcome.sha256] = (image_id, item.label)
            elif stored_label != item.label:
                db.session.execute(
                    update(Image).where(Image.id == image_id).values(label_conflict=True)
                )
                self.report.conflicts.setdefault(
                    image_id, f"{item.path} ({item.label}, stored as {stored_label})"
                )

    def _link(self, new: list[tuple[int, Item]], duplicates: list[Item], stored: dict) -> None:
        """Membership rows for everything this import brought; count the newly linked
        duplicates and look for leakage between training and evaluation-only datasets."""
        members = {}
        for image_id, item in new:
            members.setdefault(image_id, item)
        for item in duplicates:
            members.setdefault(stored[item.outcome.sha256][0], item)
        if not members:
            return
        now = utcnow()
        rows = [
            {
                "dataset_id": self.dataset_id,
                "image_id": image_id,
                "import_id": self.import_id,
                "original_path": item.path,
                "label": item.label,
                "created_at": now,
            }
            for image_id, item in members.items()
        ]
        insert_ignoring_conflicts(DatasetImage.__table__, rows, "dataset_id", "image_id")
        linked = set(
            db.session.scalars(
                select(DatasetImage.image_id).where(
                    DatasetImage.dataset_id == self.dataset_id,
                    DatasetImage.image_id.in_(list(members)),
                    DatasetImage.import_id == self.import_id,
                )
            )
        )
        new_ids = {image_id for image_id, _ in new}
        self.report.linked += len(linked - new_ids)
        self._find_leakage({i: members[i] for i in members if i not in new_ids})

    def _find_leakage(self, duplicates: dict[int, Item]) -> None:
        if not duplicates:
            return
        ids = list(duplicates)
        other = Dataset.evaluation_only == (not self.evaluation_only)
        by_membership = (
            select(DatasetImage.image_id, Dataset.name)
            .join(Dataset, Dataset.id == DatasetImage.dataset_id)
            .where(DatasetImage.image_id.in_(ids), other)
        )
        by_origin = (
            select(Image.id, Dataset.name)
            .join(Dataset, Dataset.id == Image.dataset_id)
            .where(Image.id.in_(ids), other)
        )
        for statement in (by_membership, by_origin):
            for image_id, name in db.session.execute(statement):
                self.report.leakage[name].add(image_id)
                examples = self.report.leakage_examples
                if len(examples) < EXAMPLES and duplicates[image_id].path not in examples:
                    examples.append(duplicates[image_id].path)
