"""Admin pages: overview, model versions (activate / roll back, retrain) and jobs."""

from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from ..auth import admin_required
from ..extensions import db
from ..jobs import cancel, submit
from ..models import Dataset, Image, Job, ModelVersion, Prediction, ReviewDecision
from ..services import versions

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _count(statement) -> int:
    return db.session.scalar(statement) or 0


@bp.route("/")
@admin_required
def overview():
    """Counts, the active version and the latest jobs at a glance."""
    active = versions.active_version()
    counts = {
        "images": _count(select(func.count(Image.id))),
        "datasets": _count(select(func.count(Dataset.id))),
        "labelled": _count(select(func.count(Image.id)).where(Image.label != "unknown")),
        "decisions": _count(select(func.count(ReviewDecision.id))),
        "scored": _count(
            select(func.count(Prediction.id)).where(Prediction.model_version_id == active.id)
        )
        if active
        else 0,
    }
    jobs = db.session.scalars(select(Job).order_by(Job.id.desc()).limit(8)).all()
    return render_template("admin/overview.html", counts=counts, active=active, jobs=jobs)


@bp.route("/versions")
@admin_required
def versions_page():
    """Every version side by side with its metrics."""
    rows = db.session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())).all()
    training = db.session.scalar(
        select(Job).where(Job.kind == "train", Job.state.in_(["queued", "running"]))
    )
    return render_template("admin/versions.html", versions=rows, training=training)


@bp.route("/versions/<name>/activate", methods=["POST"])
@admin_required
def activate(name: str):
    """Promote or roll back to version ``name``."""
    try:
        version = versions.get_version(name)
    except ValueError:
        abort(404)
    versions.activate(version)
    flash(f"{version.name} is now active; the queue uses its scores.", "info")
    if not _count(
        select(func.count(Prediction.id)).where(Prediction.model_version_id == version.id)
    ):
        submit("predict", {"version": version.name}, user_id=current_user.id)
        flash(f"{version.name} had not scored the images yet: a scoring job was started.", "info")
    return redirect(url_for("admin.versions_page"))


@bp.route("/train", methods=["POST"])
@admin_required
def train():
    """Start a training job (asking again while one runs returns the running one)."""
    params = {
        "epochs": request.form.get("epochs", type=int),
        "image_size": request.form.get("image_size", type=int),
        "datasets": request.form.getlist("datasets"),
    }
    job = submit("train", params, user_id=current_user.id)
    flash(f"Training job {job.id} is {job.state}.", "info")
    return redirect(url_for("admin.job_page", job_id=job.id))


@bp.route("/jobs")
@admin_required
def jobs():
    """Recent jobs with their state and progress."""
    rows = db.session.scalars(select(Job).order_by(Job.id.desc()).limit(100)).all()
    return render_template("admin/jobs.html", jobs=rows)


@bp.route("/jobs/<int:job_id>")
@admin_required
def job_page(job_id: int):
    """One job: progress (polled), log and error."""
    return render_template("admin/job.html", job=db.get_or_404(Job, job_id))


@bp.route("/jobs/<int:job_id>.json")
@admin_required
def job_json(job_id: int):
    """A job's state for the page's polling."""
    return jsonify(job_to_dict(db.get_or_404(Job, job_id)))


@bp.route("/jobs/<int:job_id>/cancel", methods=["POST"])
@admin_required
def cancel_job(job_id: int):
    """Ask a job to stop."""
    job = cancel(db.get_or_404(Job, job_id))
    flash(f"Job {job.id}: cancellation requested ({job.state}).", "info")
    return redirect(url_for("admin.job_page", job_id=job.id))


def job_to_dict(job: Job) -> dict:
    """The JSON form of a job, shared by the admin pages and the API."""
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "params": job.params,
        "progress": job.progress or {},
        "result": job.result,
        "error": job.error,
        "log": job.log,
        "created_at": job.created_at.isoformat() + "Z",
        "started_at": job.started_at.isoformat() + "Z" if job.started_at else None,
        "finished_at": job.finished_at.isoformat() + "Z" if job.finished_at else None,
    }
