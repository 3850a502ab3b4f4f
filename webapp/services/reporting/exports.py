"""Labels export: the effective labels as CSV, and as an ImageFolder tree (REAL/, FAKE/).

The tree is what torchvision's ``ImageFolder`` and the seed's notebook train on. Its files are
hard links to the stored originals where the file system allows, else copies. Like the
reports, rows are read in keyset pages, never all at once.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ...extensions import db
from ...models import Dataset, Image
from ..records.labels import effective_labels
from ..records.lookup import UnknownName
from .csv_safe import safe_row
from .reports import (
    Progress,
    active_decisions,
    check_split,
    count_images,
    id_pages,
    in_scope,
    label_source,
)

LABEL_COLUMNS = ("image_id", "sha256", "file_name", "dataset", "split", "label", "source")
LABEL_FORMATS = ("csv", "imagefolder")
CLASS_FOLDERS = {"real": "REAL", "fake": "FAKE"}


def find_dataset(name: str | None) -> Dataset | None:
    """The named dataset (None for all); ValueError when there is no such dataset."""
    if not name:
        return None
    dataset = db.session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise UnknownName(f"unknown dataset {name!r}")
    return dataset


def image_pages(dataset: Dataset | None, split: str | None, chunk: int | None = None):
    """Pages of Image rows (with their first dataset loaded) in id order."""
    query = in_scope(
        select(Image).options(joinedload(Image.dataset)).order_by(Image.id), dataset, split
    )
    yield from id_pages(db.session.scalars, query, chunk)


def iter_label_rows(
    dataset_name: str | None = None, split: str | None = None, progress: Progress | None = None
) -> Iterator[tuple[Image, dict[str, Any]]]:
    """(image, row) for every image in scope; the row holds its effective label and source."""
    dataset = find_dataset(dataset_name)
    check_split(split)
    total = count_images(dataset, split) if progress else 0
    done = 0
    for page in image_pages(dataset, split):
        ids = [image.id for image in page]
        labels = effective_labels(ids)
        decisions = active_decisions(ids)
        for image in page:
            label = labels.get(image.id, image.label)
            yield (
                image,
                {
                    "image_id": image.id,
                    "sha256": image.sha256,
                    "file_name": image.file_name,
                    "dataset": dataset.name if dataset else image.dataset.name,
                    "split": image.split,
                    "label": label,
                    "source": label_source(label, decisions.get(image.id, [])),
                },
            )
        done += len(page)
        if progress:
            progress(done, total)


def write_labels_csv(
    path: Path | str,
    dataset_name: str | None = None,
    split: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every image's effective label as CSV; returns counts per label."""
    counts: dict[str, int] = {}
    path = Path(path)
    partial = path.with_name(path.name + ".part")
    try:
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(LABEL_COLUMNS)
            for _image, row in iter_label_rows(dataset_name, split, progress):
                writer.writerow(safe_row(row[column] for column in LABEL_COLUMNS))
                counts[row["label"]] = counts.get(row["label"], 0) + 1
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return {"dataset": dataset_name, "split": split, "rows": sum(counts.values()), "labels": counts}


def tree_name(image: Image, source: Path) -> str:
    """A unique, readable file name: ``<id>-<original stem><extension of the stored file>``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(image.file_name).stem).strip("._")[:80]
    suffix = source.suffix.lower() or f".{image.format.lower()}"
    return f"{image.id}-{stem or 'image'}{suffix}"


def labelled_files(
    dataset_name: str | None, split: str | None, progress: Progress | None, summary: dict
) -> Iterator[tuple[str, Path]]:
    """(``REAL/name`` or ``FAKE/name``, stored original) for each real/fake image in scope.

    Images whose original is missing are counted in ``summary["missing"]`` (the first few ids
    in ``missing_examples``) and left out.
    """
    from .. import storage

    for image, row in iter_label_rows(dataset_name, split, progress):
        folder = CLASS_FOLDERS.get(row["label"])
        if folder is None:
            summary["skipped_unlabelled"] += 1
            continue
        source = Path(storage.original_path(image))
        if not source.is_file():
            summary["missing"] += 1
            if len(summary["missing_examples"]) < 20:
                summary["missing_examples"].append(image.id)
            continue
        summary[row["label"]] += 1
        yield f"{folder}/{tree_name(image, source)}", source


def _new_summary(dataset_name: str | None, split: str | None) -> dict[str, Any]:
    return {
        "dataset": dataset_name,
        "split": split,
        "real": 0,
        "fake": 0,
        "skipped_unlabelled": 0,
        "missing": 0,
        "missing_examples": [],
        "linked": 0,
        "copied": 0,
    }


def write_imagefolder(
    root: Path | str,
    dataset_name: str | None = None,
    split: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Lay out REAL/ and FAKE/ under ``root`` (new or empty: nothing there is overwritten)."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{root} exists and is not an empty folder; choose a new one")
    root.mkdir(parents=True, exist_ok=True)
    summary = _new_summary(dataset_name, split)
    for relative, source in labelled_files(dataset_name, split, progress, summary):
        target = root / relative
        target.parent.mkdir(exist_ok=True)
        try:
            os.link(source, target)
            summary["linked"] += 1
        except OSError:  # another file system, or links not allowed: copy instead
            shutil.copyfile(source, target)
            summary["copied"] += 1
    return summary


def write_imagefolder_zip(
    path: Path | str,
    dataset_name: str | None = None,
    split: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The ImageFolder tree as one zip (stored, not recompressed: images are compressed already)."""
    path = Path(path)
    partial = path.with_name(path.name + ".part")
    summary = _new_summary(dataset_name, split)
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
            for relative, source in labelled_files(dataset_name, split, progress, summary):
                archive.write(source, arcname=relative)
                summary["copied"] += 1
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return summary
