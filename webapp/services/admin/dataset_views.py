"""Datasets as the admin pages show them: the index, one dataset, one import, an import job.

The queries behind ``/admin/datasets/``, so the views only parse, call and render (the web layer
adds the URLs).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ...extensions import db
from ...models import Dataset, DatasetImage, Image, ImportRun, Job, JobState
from ..importing.importer import mark_interrupted_runs

RECENT_IMPORTS = 15
SAMPLES_PER_LABEL = 12
SPLITS = ("train", "val", "test")


def dataset_names() -> list[str]:
    """Every dataset's name, in order."""
    return list(db.session.scalars(select(Dataset.name).order_by(Dataset.name)))


def label_counts() -> dict[int, dict[str, int]]:
    """Images per dataset and label: {dataset_id: {label: n}}."""
    rows = db.session.execute(
        select(DatasetImage.dataset_id, Image.label, func.count())
        .join(Image, Image.id == DatasetImage.image_id)
        .group_by(DatasetImage.dataset_id, Image.label)
    )
    counts: dict[int, dict[str, int]] = {}
    for dataset_id, label, count in rows:
        counts.setdefault(dataset_id, {})[label] = count
    return counts


def overview(watched_job: int | None = None) -> dict[str, Any]:
    """The index page: datasets with their counts, the imports running now (and the one being
    watched), the recent import runs; runs whose process died are marked interrupted first."""
    mark_interrupted_runs()
    datasets = db.session.scalars(select(Dataset).order_by(Dataset.name)).all()
    running = db.session.scalars(
        select(Job.id)
        .where(Job.kind == "import", Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
        .order_by(Job.id)
    ).all()
    recent = db.session.scalars(
        select(ImportRun).order_by(ImportRun.id.desc()).limit(RECENT_IMPORTS)
    ).all()
    return {
        "datasets": datasets,
        "counts": label_counts(),
        "job_ids": sorted(set(running) | ({watched_job} if watched_job else set())),
        "recent": recent,
        "names": {dataset.id: dataset.name for dataset in datasets},
    }


def dataset_detail(dataset_id: int) -> dict[str, Any] | None:
    """One dataset: counts by label and split, label conflicts, its import runs, a few samples
    per label (None when there is no such dataset)."""
    mark_interrupted_runs()
    dataset = db.session.get(Dataset, dataset_id)
    if dataset is None:
        return None
    member = select(DatasetImage.image_id).where(DatasetImage.dataset_id == dataset_id)
    by_label_split = db.session.execute(
        select(Image.label, Image.split, func.count())
        .where(Image.id.in_(member))
        .group_by(Image.label, Image.split)
    ).all()
    conflicts = db.session.scalar(
        select(func.count()).where(Image.id.in_(member), Image.label_conflict.is_(True))
    )
    runs = db.session.scalars(
        select(ImportRun).where(ImportRun.dataset_id == dataset_id).order_by(ImportRun.id.desc())
    ).all()
    samples = [
        image
        for label in ("real", "fake", "unknown")
        for image in db.session.scalars(
            select(Image)
            .where(Image.id.in_(member), Image.label == label)
            .order_by(Image.id)
            .limit(SAMPLES_PER_LABEL)
        )
    ]
    return {
        "dataset": dataset,
        "table": _pivot(by_label_split),
        "conflicts": conflicts,
        "runs": runs,
        "samples": samples,
    }


def _pivot(rows) -> dict:
    table = {}
    for label, split, count in rows:
        table.setdefault(label, dict.fromkeys(SPLITS, 0))[split] = count
    return table


def imported_files(run: ImportRun, limit: int) -> list:
    """(original path, image id, label, sha256) of the files an import run stored, by path."""
    return db.session.execute(
        select(DatasetImage.original_path, Image.id, Image.label, Image.sha256)
        .join(Image, Image.id == DatasetImage.image_id)
        .where(DatasetImage.import_id == run.id)
        .order_by(DatasetImage.original_path)
        .limit(limit)
    ).all()


def import_job_summary(job: Job) -> dict[str, Any]:
    """What the index page polls about an import job: its state and the import's counts, with
    the ids of its dataset and import run (for links) once they exist."""
    result = job.result or {}
    dataset_id = None
    if result.get("dataset"):
        dataset_id = db.session.scalar(select(Dataset.id).where(Dataset.name == result["dataset"]))
    return {
        "id": job.id,
        "state": job.state,
        "finished": job.is_finished,
        "progress": job.progress or {},
        "imported": result.get("imported"),
        "duplicates": result.get("duplicates"),
        "rejected": len(result.get("rejected", [])),
        "skipped": result.get("skipped", 0),
        "warnings": result.get("warnings", []),
        "dataset": result.get("dataset") or (job.params or {}).get("dataset"),
        "dataset_id": dataset_id,
        "import_id": result.get("import_id"),
        "error": job.error.strip().splitlines()[-1] if job.error else "",
    }
