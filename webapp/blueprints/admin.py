"""Admin pages: overview, model versions (compare, activate / roll back, retrain), jobs, tokens."""

from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth import admin_required
from ..extensions import db
from ..inputs import int_arg
from ..jobs import cancel
from ..models import ApiToken, Job, ModelVersion, User
from ..services.admin import figures, job_views
from ..services.admin.job_views import job_to_dict
from ..services.people import accounts
from ..services.people.tokens import all_tokens, create_token
from ..services.people.tokens import revoke_token as revoke
from ..services.records import catalog, versions
from ..services.reporting.plots import (
    confusion_matrix_svg,
    reliability_svg,
    roc_svg,
    training_curves_svg,
)
from ..services.training import trainset
from ..services.training.activation import activate_with_scoring
from ..services.training.comparison import (
    compare_versions,
    count_verdict_changes,
    previous_version,
    verdict_changes,
    verdict_shift,
)
from ..services.training.train_request import TrainRequestError, clean_train_params, start_training

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/")
@admin_required
def overview():
    """Counts, the active version and the latest jobs at a glance."""
    active = versions.active_version()
    jobs = job_views.recent_jobs(8)
    return render_template(
        "admin/overview.html",
        counts=figures.counts(active),
        active=active,
        jobs=jobs,
        views=_views(jobs),
    )


@bp.route("/versions")
@admin_required
def versions_page():
    """Every version side by side on the fixed test split and the reviewed images."""
    comparison = compare_versions()
    training = job_views.training_in_flight()
    return render_template(
        "admin/versions.html",
        versions=comparison["versions"],
        comparison=comparison,
        plots=version_plots(comparison),
        training=training,
        active=versions.active_version(),
        labels_moved=trainset.labels_changed_since(versions.active_version()),
        lineage={v.name: versions.lineage(v) for v in comparison["versions"]},
        curves_notes={v.name: versions.curves_note(v) for v in comparison["versions"]},
        trained_on={v.name: versions.training_data(v) for v in comparison["versions"]},
        presets=versions.TRAIN_PRESETS,
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
        if version.kind in versions.DERIVED_KINDS:
            continue  # no epochs of its own: the page says so and points at its parent
        plots["training"][version.name] = training_curves_svg(
            version.history, f"{version.name} · loss and accuracy per epoch"
        )
    return plots


@bp.route("/versions/<name>/changes")
@admin_required
def verdict_changes_page(name: str):
    """Images whose verdict differs between version ``name`` and another one: ``against`` (the
    active version, from the activation page) or else the version made before it."""
    version = _version_or_404(name)
    against = request.args.get("against")
    previous = _version_or_404(against) if against else previous_version(version)
    after = int_arg("after", 0)
    rows = verdict_changes(version, previous, after=after, limit=200) if previous else []
    return render_template(
        "admin/verdict_changes.html",
        version=version,
        previous=previous,
        against=against,
        rows=rows,
        total=count_verdict_changes(version, previous),
        thumbnails=catalog.thumbnail_hashes([row["image_id"] for row in rows]),
        next_after=rows[-1]["image_id"] if len(rows) == 200 else None,
    )


def _version_or_404(name: str) -> ModelVersion:
    try:
        return versions.get_version(name)
    except ValueError:
        abort(404)


@bp.get("/versions/<name>/activate")
@admin_required
def confirm_activate(name: str):
    """The activation's confirmation: how many verdicts change, in which direction."""
    version = _version_or_404(name)
    active = versions.active_version()
    return render_template(
        "admin/activate.html",
        version=version,
        active=active,
        shift=verdict_shift(version, active),
        lineage=versions.lineage(version),
    )


@bp.post("/versions/<name>/activate")
@admin_required
def activate(name: str):
    """Promote or roll back to version ``name`` (after the confirmation page)."""
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
        "preset": request.form.get("preset") or None,
        "oof_method": request.form.get("oof_method") or None,
    }
    if params["oof_method"] == "margins":  # the networks select belongs to the margins choice
        params["oof_networks"] = request.form.get("oof_networks", type=int)
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
    rows = job_views.recent_jobs(100)
    return render_template("admin/jobs.html", jobs=rows, views=_views(rows))


def _views(rows) -> dict[int, job_views.JobView]:
    """Each job in words, by id, for the jobs tables."""
    return {job.id: job_views.describe(job) for job in rows}


@bp.route("/jobs/<int:job_id>")
@admin_required
def job_page(job_id: int):
    """One job: progress (polled), the result in sentences and links, the error if any, the log."""
    job = db.get_or_404(Job, job_id)
    return render_template("admin/job.html", job=job, view=job_views.describe(job))


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
            token, secret = create_token(user, request.form.get("name", ""), current_user)
        except ValueError as error:
            flash(str(error), "error")
        else:
            flash(f"Token {token.name!r} for {user.username} made: copy it now.", "info")
    return render_template(
        "admin/tokens.html", tokens=all_tokens(), users=accounts.all_users(), secret=secret
    )


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@admin_required
def revoke_token(token_id: int):
    """Stop a token working."""
    token = revoke(db.get_or_404(ApiToken, token_id), current_user)
    flash(f"Token {token.name!r} revoked.", "info")
    return redirect(url_for("admin.tokens"))
