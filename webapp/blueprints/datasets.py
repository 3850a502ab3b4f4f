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

from ..auth import admin_required, reviewer_required
from ..extensions import db
from ..inputs import int_arg
from ..models import Dataset, ImportRun, Job
from ..services.admin import dataset_admin, dataset_views
from ..services.importing.upload import UploadError, submit_upload
from ..services.storage import servable_file, thumbnail_path, thumbnails_root
from ..services.training import data_audit

bp = Blueprint("datasets", __name__, url_prefix="/admin/datasets")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@bp.get("/")
@admin_required
def index():
    """Datasets with their counts, the upload form, and the imports running now."""
    page = dataset_views.overview(watched_job=int_arg("job", None, 1))
    return render_template("datasets/index.html", **page)


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
    summary = dataset_views.import_job_summary(job)
    dataset_id, run_id = summary.pop("dataset_id"), summary.pop("import_id")
    detail_url = url_for("datasets.detail", dataset_id=dataset_id) if dataset_id else None
    import_url = url_for("datasets.import_page", run_id=run_id) if run_id else None
    return jsonify(summary | {"detail_url": detail_url, "import_url": import_url})


@bp.get("/<int:dataset_id>")
@admin_required
def detail(dataset_id: int):
    """One dataset: counts by label and split, its import reports, a few thumbnails."""
    page = dataset_views.dataset_detail(dataset_id)
    if page is None:
        abort(404)
    return render_template("datasets/detail.html", **page)


@bp.get("/stats")
@admin_required
def stats():
    """The data audit page: distributions per class, outliers, shortcut warnings, plots."""
    names = dataset_views.dataset_names()
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
    imported = dataset_views.imported_files(run, FILES_SHOWN)
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
