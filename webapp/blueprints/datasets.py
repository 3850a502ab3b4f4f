"""Admin pages for data: the datasets and their imports, the upload form, the data audit."""

from __future__ import annotations

import re

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select

from ..auth import admin_required, reviewer_required
from ..extensions import db
from ..inputs import int_arg
from ..models import Dataset, DatasetImage, Image, ImportRun, Job, JobState
from ..services.admin import dataset_admin
from ..services.importing.importer import mark_interrupted_runs
from ..services.importing.upload import UploadError, submit_upload
from ..services.storage import servable_file, thumbnail_path, thumbnails_root
from ..services.training import data_audit

bp = Blueprint("datasets", __name__, url_prefix="/admin/datasets")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _label_counts() -> dict[int, dict[str, int]]:
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


@bp.get("/")
@admin_required
def index():
    """Datasets with their counts, the upload form, and the imports running now."""
    mark_interrupted_runs()
    datasets = db.session.scalars(select(Dataset).order_by(Dataset.name)).all()
    running = db.session.scalars(
        select(Job)
        .where(Job.kind == "import", Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
        .order_by(Job.id)
    ).all()
    watched = int_arg("job", None, 1)
    job_ids = sorted({job.id for job in running} | ({watched} if watched else set()))
    recent = db.session.scalars(select(ImportRun).order_by(ImportRun.id.desc()).limit(15)).all()
    names = {dataset.id: dataset.name for dataset in datasets}
    return render_template(
        "datasets/index.html",
        datasets=datasets,
        counts=_label_counts(),
        job_ids=job_ids,
        recent=recent,
        names=names,
    )


@bp.post("/upload")
@admin_required
def upload():
    """Save the upload and queue its import; the index page then follows the job."""
    try:
        job = submit_upload(
            request.files.getlist("files") + request.files.getlist("folder"),
            dataset=request.form.get("dataset", ""),
            label=request.form.get("label") or None,
            evaluation_only=bool(request.form.get("evaluation_only")),
            user_id=current_user.id,
        )
    except UploadError as error:
        flash(str(error), "error")
        return redirect(url_for("datasets.index"))
    flash(f"Upload received; import job {job.id} queued.", "info")
    return redirect(url_for("datasets.index", job=job.id))


@bp.get("/jobs/<int:job_id>")
@admin_required
def job_status(job_id: int):
    """A small JSON view of an import job, polled by the index page."""
    job = db.session.get(Job, job_id)
    if job is None or job.kind != "import":
        abort(404)
    result = job.result or {}
    dataset_id = None
    if result.get("dataset"):
        dataset_id = db.session.scalar(select(Dataset.id).where(Dataset.name == result["dataset"]))
    return jsonify(
        {
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
            "detail_url": url_for("datasets.detail", dataset_id=dataset_id) if dataset_id else None,
            "import_url": url_for("datasets.import_page", run_id=result["import_id"])
            if result.get("import_id")
            else None,
            "error": job.error.strip().splitlines()[-1] if job.error else "",
        }
    )


@bp.get("/<int:dataset_id>")
@admin_required
def detail(dataset_id: int):
    """One dataset: counts by label and split, its import reports, a few thumbnails."""
    mark_interrupted_runs()
    dataset = db.session.get(Dataset, dataset_id)
    if dataset is None:
        abort(404)
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
            .limit(12)
        )
    ]
    return render_template(
        "datasets/detail.html",
        dataset=dataset,
        table=_pivot(by_label_split),
        conflicts=conflicts,
        runs=runs,
        samples=samples,
    )


def _pivot(rows) -> dict:
    splits = ("train", "val", "test")
    table = {}
    for label, split, count in rows:
        table.setdefault(label, dict.fromkeys(splits, 0))[split] = count
    return table


@bp.get("/stats")
@admin_required
def stats():
    """The data audit page: distributions per class, outliers, shortcut warnings, plots."""
    names = db.session.scalars(select(Dataset.name).order_by(Dataset.name)).all()
    chosen = request.args.get("dataset") or None
    if chosen is not None and chosen not in names:
        abort(404)
    result = data_audit.dataset_stats(chosen, with_channel_stats=None)
    return render_template(
        "datasets/stats.html",
        stats=result,
        names=names,
        chosen=chosen,
        warnings=data_audit.shortcut_warnings(stats=result),
    )


@bp.get("/thumbnails/<sha256>.jpg")
@reviewer_required
def thumbnail(sha256: str):
    """The JPEG thumbnail of an image, by content hash (for every page that shows images)."""
    if not SHA256.match(sha256):
        abort(404)
    path = servable_file(thumbnail_path(sha256), thumbnails_root())
    if path is None:
        abort(404)
    return send_file(path, mimetype="image/jpeg", max_age=86400)


def _dataset_or_404(dataset_id: int) -> Dataset:
    dataset = db.session.get(Dataset, dataset_id)
    if dataset is None:
        abort(404)
    return dataset


@bp.get("/imports/<int:run_id>")
@admin_required
def import_page(run_id: int):
    """One import: what became of every file (imported, duplicate, rejected, skipped)."""
    run = db.session.get(ImportRun, run_id)
    if run is None:
        abort(404)
    imported = db.session.execute(
        select(DatasetImage.original_path, Image.id, Image.label, Image.sha256)
        .join(Image, Image.id == DatasetImage.image_id)
        .where(DatasetImage.import_id == run.id)
        .order_by(DatasetImage.original_path)
        .limit(FILES_SHOWN)
    ).all()
    return render_template(
        "datasets/import.html",
        run=run,
        report=run.report or {},
        imported=imported,
        shown=FILES_SHOWN,
    )


FILES_SHOWN = 2000


@bp.get("/<int:dataset_id>/delete")
@admin_required
def confirm_delete(dataset_id: int):
    """The confirmation page: what deleting the dataset removes, in numbers."""
    dataset = _dataset_or_404(dataset_id)
    return render_template(
        "datasets/delete.html", dataset=dataset, counts=dataset_admin.deletion_counts(dataset)
    )


@bp.post("/<int:dataset_id>/delete")
@admin_required
def delete(dataset_id: int):
    """Delete the dataset once its name was typed to confirm; decisions go to the audit trail."""
    dataset = _dataset_or_404(dataset_id)
    if request.form.get("confirm_name", "").strip() != dataset.name:
        flash("Type the dataset's name to confirm the deletion; nothing was deleted.", "error")
        return redirect(url_for("datasets.confirm_delete", dataset_id=dataset_id))
    name = dataset.name
    counts = dataset_admin.delete_dataset(dataset, current_user)
    flash(
        f"Dataset {name} deleted: {counts.images} images, {counts.predictions} predictions and "
        f"{counts.decisions} decisions (copied to the audit trail first); "
        f"{counts.shared} images kept because other datasets hold them.",
        "info",
    )
    return redirect(url_for("datasets.index"))


@bp.post("/<int:dataset_id>/archive")
@admin_required
def archive(dataset_id: int):
    """Archive or restore a dataset (``archived=1`` or ``0``)."""
    dataset = _dataset_or_404(dataset_id)
    archived = request.form.get("archived") == "1"
    dataset_admin.set_archived(dataset, archived, current_user)
    state = "archived: hidden from reviewers and new trainings" if archived else "restored"
    flash(f"Dataset {dataset.name} {state}.", "info")
    return redirect(url_for("datasets.detail", dataset_id=dataset_id))
