"""Admin pages: overview, model versions (compare, activate / roll back, retrain), jobs, tokens."""

from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from ..auth import admin_required
from ..extensions import db
from ..inputs import int_arg
from ..jobs import cancel, submit
from ..models import ApiToken, Dataset, Image, Job, ModelVersion, Prediction, ReviewDecision, User
from ..services import versions
from ..services.comparison import (
    compare_versions,
    count_verdict_changes,
    previous_version,
    verdict_changes,
)
from ..services.plots import confusion_matrix_svg, reliability_svg, roc_svg, training_curves_svg
from ..services.tokens import create_token
from ..services.tokens import revoke_token as revoke
from ..services.train_request import TrainRequestError, clean_train_params, start_training

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
    """Every version side by side on the fixed test split and the reviewed images."""
    comparison = compare_versions()
    training = db.session.scalar(
        select(Job).where(Job.kind == "train", Job.state.in_(["queued", "running"]))
    )
    return render_template(
        "admin/versions.html",
        versions=comparison["versions"],
        comparison=comparison,
        plots=version_plots(comparison),
        training=training,
        active=versions.active_version(),
        labels_moved=versions.labels_changed_since(versions.active_version()),
    )


def version_plots(comparison: dict) -> dict:
    """Inline SVG charts for the versions page."""
    plots: dict = {"confusion": {}, "training": {}}
    for key in ("test", "reviewed"):
        measured = [(v.name, comparison[key].get(v.name)) for v in comparison["versions"]]
        shown = [(name, m) for name, m in measured if m]
        title = comparison[key]["name"]
        plots[f"roc_{key}"] = roc_svg(
            [(name, m["roc"], m["roc_auc"]) for name, m in shown], f"ROC · {title}"
        )
        plots[f"reliability_{key}"] = reliability_svg(
            [(name, m["reliability"]) for name, m in shown], f"Reliability · {title}"
        )
        for name, m in shown:
            plots["confusion"][(name, key)] = confusion_matrix_svg(
                m["confusion_matrix"], f"{name} · {title}"
            )
    for version in comparison["versions"]:
        plots["training"][version.name] = training_curves_svg(
            version.history, f"{version.name} · loss and accuracy per epoch"
        )
    return plots


@bp.route("/versions/<name>/changes")
@admin_required
def verdict_changes_page(name: str):
    """Images whose verdict changed between version ``name`` and the one before it."""
    version = _version_or_404(name)
    previous = previous_version(version)
    after = int_arg("after", 0)
    rows = verdict_changes(version, previous, after=after, limit=200) if previous else []
    return render_template(
        "admin/verdict_changes.html",
        version=version,
        previous=previous,
        rows=rows,
        total=count_verdict_changes(version, previous),
        next_after=rows[-1]["image_id"] if len(rows) == 200 else None,
    )


def _version_or_404(name: str) -> ModelVersion:
    try:
        return versions.get_version(name)
    except ValueError:
        abort(404)


def activate_with_scoring(version: ModelVersion, user_id: int | None) -> Job | None:
    """Activate (promote or roll back); start scoring when the version has not scored yet."""
    versions.activate(version)
    if _count(select(func.count(Prediction.id)).where(Prediction.model_version_id == version.id)):
        return None
    return submit("predict", {"version": version.name}, user_id=user_id)


@bp.route("/versions/<name>/activate", methods=["POST"])
@admin_required
def activate(name: str):
    """Promote or roll back to version ``name``."""
    version = _version_or_404(name)
    scoring = activate_with_scoring(version, current_user.id)
    flash(f"{version.name} is now active; the queue uses its scores.", "info")
    if scoring is not None:
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
        "head_only": request.form.get("head_only") == "1",
    }
    try:
        job = start_training(clean_train_params(params), current_user.id)
    except TrainRequestError as error:
        flash(str(error), "error")
        return redirect(url_for("admin.versions_page"))
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


@bp.route("/tokens", methods=["GET", "POST"])
@admin_required
def tokens():
    """API tokens for scripts: list, and create one (its secret is shown on this page once)."""
    secret = None
    if request.method == "POST":
        user_id = request.form.get("user_id", "")
        known = user_id.isdigit() and len(user_id) < 19  # a 64-bit id
        user = db.session.get(User, int(user_id)) if known else None
        try:
            if user is None:
                raise ValueError("choose the user the token acts as")
            token, secret = create_token(user, request.form.get("name", ""))
        except ValueError as error:
            flash(str(error), "error")
        else:
            flash(f"Token {token.name!r} for {user.username} made: copy it now.", "info")
    rows = db.session.scalars(select(ApiToken).order_by(ApiToken.id.desc())).all()
    users = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template("admin/tokens.html", tokens=rows, users=users, secret=secret)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@admin_required
def revoke_token(token_id: int):
    """Stop a token working."""
    token = revoke(db.get_or_404(ApiToken, token_id))
    flash(f"Token {token.name!r} revoked.", "info")
    return redirect(url_for("admin.tokens"))
