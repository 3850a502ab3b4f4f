"""JSON API for scripts: images, predictions, decisions, jobs, versions, reports.

Authenticate with ``Authorization: Bearer <token>`` (or a browser session plus CSRF token).
Lists are pages in id order: pass the returned ``next_after`` as ``?after=`` for the next one.
Role checks are the UI's: reviewers read and export, admins also train, activate and cancel.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, render_template, request
from flask_login import current_user

from ..auth import admin_required, reviewer_required
from ..extensions import db
from ..inputs import MAX_ID, int_arg
from ..jobs import cancel
from ..models import (
    Image,
    Job,
)
from ..services.admin.job_views import job_to_dict
from ..services.api import listings, schemas
from ..services.api import rows as shapes
from ..services.api.openapi import build_document, document, query_param
from ..services.api.schemas import dump, parse_body
from ..services.records import versions
from ..services.records.labels import effective_labels
from ..services.records.lookup import UnknownName, http_status
from ..services.reporting import report_jobs
from ..services.training.activation import activate_with_scoring
from ..services.training.train_request import TrainRequestError, clean_train_params, start_training

bp = Blueprint("api_admin", __name__, url_prefix="/api/v1")

MAX_PAGE = 500
PAGING = [
    query_param(
        "after", "integer", "return items with an id above this one", minimum=0, maximum=MAX_ID
    ),
    query_param(
        "limit",
        "integer",
        f"items per page (default 100, at most {MAX_PAGE})",
        minimum=1,
        maximum=MAX_PAGE,
    ),
]
SPLITS = listings.SPLITS
TRAIN_PARAMS = (
    *("epochs", "image_size", "datasets", "seed", "score", "preset", "head_only"),
    *("oof_method", "oof_folds", "oof_epochs", "oof_networks"),
)


def page_args() -> tuple[int, int]:
    """``after`` and ``limit`` from the query string, checked."""
    after = int_arg("after", 0, blank_is_absent=False)
    return after, int_arg("limit", 100, 1, MAX_PAGE, blank_is_absent=False)


def page(items: list[dict[str, Any]], limit: int, key: str = "id") -> dict[str, Any]:
    """A page of items and the cursor for the next one (None on the last page)."""
    return {"items": items, "next_after": items[-1][key] if len(items) == limit else None}


@bp.get("/images")
@document(
    query=[
        query_param("dataset", description="only images in this dataset"),
        query_param("split", description="train, val or test (blank: any)", enum=["", *SPLITS]),
        *PAGING,
    ],
    response=schemas.ImagePage,
    errors=(400, 404),
)
@reviewer_required
def list_images():
    """Images in id order, with import and effective labels."""
    after, limit = page_args()
    dataset, split = request.args.get("dataset") or None, request.args.get("split") or None
    try:
        images = listings.images(after, limit, dataset, split)
    except UnknownName as error:
        abort(404, description=str(error))
    except ValueError as error:
        abort(400, description=str(error))
    labels = effective_labels([image.id for image in images]) if images else {}
    items = [shapes.image_dict(i, labels.get(i.id, i.label)) for i in images]
    return jsonify(dump(schemas.ImagePage, page(items, limit)))


@bp.get("/images/<int:image_id>")
@document(response=schemas.ImageDetail, errors=(404,))
@reviewer_required
def get_image(image_id: int):
    """One image with every version's prediction and every review decision on it."""
    image = db.get_or_404(Image, image_id)
    names = listings.version_names()
    datasets, predictions, decisions = listings.image_record(image)
    label = effective_labels([image.id]).get(image.id, image.label)
    detail = {
        **shapes.image_dict(image, label),
        "datasets": datasets,
        "predictions": [shapes.prediction_dict(p, names[p.model_version_id]) for p in predictions],
        "decisions": shapes.visible_decisions(current_user, decisions, names),
    }
    return jsonify(dump(schemas.ImageDetail, detail))


@bp.get("/predictions")
@document(
    query=[query_param("version", description="version name (default: the active one)"), *PAGING],
    response=schemas.PredictionPage,
    errors=(400, 404),
)
@reviewer_required
def list_predictions():
    """A version's predictions in image id order (``after`` is an image id)."""
    try:
        version = versions.get_version(request.args.get("version") or None)
    except ValueError as error:
        abort(http_status(error), description=str(error))
    after, limit = page_args()
    rows = listings.predictions(version, after, limit)
    items = [shapes.prediction_dict(p, version.name) for p in rows]
    return jsonify(dump(schemas.PredictionPage, page(items, limit, "image_id")))


@bp.get("/decisions")
@document(
    query=[
        query_param(
            "image_id", "integer", "only decisions on this image", minimum=1, maximum=MAX_ID
        ),
        query_param("reviewer", description="only this reviewer's decisions"),
        *PAGING,
    ],
    response=schemas.DecisionPage,
    errors=(400,),
)
@reviewer_required
def list_decisions():
    """Review decisions in the order they were made (undo rows included: they name what they
    revert)."""
    after, limit = page_args()
    image_id = int_arg("image_id", None, 1, blank_is_absent=False)
    reviewer = request.args.get("reviewer") or None
    rows = listings.decisions(after, limit, image_id, reviewer)
    items = shapes.visible_decisions(current_user, rows, listings.version_names())
    return jsonify(dump(schemas.DecisionPage, page(items, limit)))


@bp.get("/jobs")
@document(
    query=[
        query_param("kind", description="train, predict, report, ..."),
        query_param("state", description="queued, running, succeeded, failed, cancelled"),
        *PAGING,
    ],
    response=schemas.JobPage,
    errors=(400,),
)
@reviewer_required
def list_jobs():
    """Jobs in id order: every job for an admin, a reviewer's own otherwise."""
    after, limit = page_args()
    kind, state = request.args.get("kind") or None, request.args.get("state") or None
    rows = listings.jobs(current_user, after, limit, kind, state)
    return jsonify(dump(schemas.JobPage, page([job_to_dict(job) for job in rows], limit)))


def _job_or_404(job_id: int) -> Job:
    job = listings.visible_job(current_user, job_id)
    if job is None:
        abort(404, description=f"no job {job_id}")
    return job


@bp.get("/jobs/<int:job_id>")
@document(response=schemas.Job, errors=(404,))
@reviewer_required
def get_job(job_id: int):
    """One job: state, progress, result, log and error."""
    return jsonify(dump(schemas.Job, job_to_dict(_job_or_404(job_id))))


@bp.post("/jobs/<int:job_id>/cancel")
@document(response=schemas.Job, errors=(404,))
@admin_required
def cancel_job(job_id: int):
    """Ask a job to stop (a queued one stops at once, a running one at its next check)."""
    return jsonify(dump(schemas.Job, job_to_dict(cancel(_job_or_404(job_id)))))


@bp.get("/versions")
@document(response=[schemas.Version])
@reviewer_required
def list_versions():
    """Every model version, newest first, with metrics and training history."""
    rows = listings.all_versions()
    return jsonify(dump(schemas.Version, [shapes.version_dict(version) for version in rows]))


@bp.post("/versions/<name>/activate")
@document(response=schemas.Activation, errors=(404, 429))
@admin_required
def activate_version(name: str):
    """Make a version the active one: promotion and rollback alike. Scoring starts if the
    version has not scored the images yet."""
    try:
        version = versions.get_version(name)
    except ValueError as error:
        abort(404, description=str(error))
    scoring = activate_with_scoring(version, current_user.id)
    activation = {
        "version": shapes.version_dict(version),
        "scoring_job": job_to_dict(scoring) if scoring else None,
    }
    return jsonify(dump(schemas.Activation, activation))


@bp.post("/train")
@document(body=schemas.TrainRequest, response=schemas.Job, status=202, errors=(400, 404, 409, 413))
@admin_required
def train():
    """Start training on the effective labels. While a training job is queued or running,
    asking again returns that job instead of starting another."""
    try:
        body = parse_body(schemas.TrainRequest).job_params()
        params = clean_train_params(body, TRAIN_PARAMS)
        job = start_training(params, current_user.id)
    except TrainRequestError as error:
        abort(error.status, description=str(error))
    return jsonify(dump(schemas.Job, job_to_dict(job))), 202


@bp.post("/reports")
@document(body=schemas.ReportRequest, response=schemas.Job, status=202, errors=(400, 404, 413, 429))
@reviewer_required
def start_report():
    """Start a misclassification report or labels export; download it when the job succeeds."""
    body = parse_body(schemas.ReportRequest).model_dump(exclude_none=True)
    try:
        job = report_jobs.start_report(body, current_user)
    except ValueError as error:
        abort(http_status(error), description=str(error))
    return jsonify(dump(schemas.Job, job_to_dict(job))), 202


@bp.get("/reports/<int:job_id>/download")
@document(response={"type": "string", "format": "binary"}, errors=(404, 409))
@reviewer_required
def download_report(job_id: int):
    """The report file of a finished job (409 until it has succeeded)."""
    job = db.session.get(Job, job_id)
    if job is None or not report_jobs.may_see(job, current_user):
        abort(404, description=f"no report job {job_id}")
    return report_jobs.send_report(job)


@bp.get("/openapi.json")
def openapi_json():
    """This API's OpenAPI 3 document, generated from the routes."""
    return jsonify(build_document(current_app))


@bp.get("/docs")
def docs():
    """A readable page of the same document (no scripts, works offline)."""
    return render_template("api/docs.html", spec=build_document(current_app))
