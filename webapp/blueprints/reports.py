"""Reports for everyone logged in: start a misclassification report or labels export, watch
it, download it."""

from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth import reviewer_required
from ..extensions import db
from ..models import Job
from ..services.admin.job_views import job_to_dict
from ..services.records import catalog
from ..services.reporting import report_jobs

bp = Blueprint("reports", __name__, url_prefix="/reports")


def report_job_or_404(job_id: int) -> Job:
    """A report job the current user may see (someone else's looks like no job at all)."""
    job = db.session.get(Job, job_id)
    if job is None or not report_jobs.may_see(job, current_user):
        abort(404)
    return job


def report_job_dict(job: Job) -> dict:
    """A report job's JSON, with its download address once the file is ready."""
    ready = report_jobs.report_file(job) is not None
    return {
        **job_to_dict(job),
        "download_url": url_for("reports.download", job_id=job.id) if ready else None,
        "view_url": url_for("reports.view", job_id=job.id)
        if ready and (job.params or {}).get("format") == "html"
        else None,
    }


@bp.route("/", methods=["GET", "POST"])
@reviewer_required
def index():
    """Choose what to export and start it; recent exports with their state and downloads."""
    status = 200
    if request.method == "POST":
        try:
            job = report_jobs.start_report(request.form.to_dict(), current_user)
        except ValueError as error:
            flash(str(error), "error")
            status = 400
        else:
            flash(f"Report job {job.id} started; it appears below when ready.", "info")
            return redirect(url_for("reports.index"))
    jobs = report_jobs.visible_report_jobs(current_user)
    return render_template(
        "reports/index.html",
        versions=catalog.versions_newest_first(),
        datasets=catalog.datasets_by_name(),
        jobs=[report_job_dict(job) for job in jobs],
        form=request.form,
    ), status


@bp.route("/jobs/<int:job_id>.json")
@reviewer_required
def job_json(job_id: int):
    """A report job's state, for the page's polling."""
    return jsonify(report_job_dict(report_job_or_404(job_id)))


@bp.route("/<int:job_id>/download")
@reviewer_required
def download(job_id: int):
    """The finished file."""
    return report_jobs.send_report(report_job_or_404(job_id))


@bp.route("/<int:job_id>/view")
@reviewer_required
def view(job_id: int):
    """An HTML report shown in the browser tab (sandboxed: it runs no script)."""
    return report_jobs.show_report(report_job_or_404(job_id))
