"""Checking one image: the Check page (drop, paste or choose images), a check's result page, and
``POST /api/v1/checks`` / ``GET /api/v1/checks/<id>`` for scripts.

Views are thin: :mod:`webapp.services.checking` stores the image, queues its scoring and builds
the JSON. A request waits up to ``CHECK_WAIT_SECONDS`` for the scoring job; when the job is
slower it answers 202 with the check's URL, which returns the result once it is ready.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from ..auth import reviewer_required
from ..errors import json_error
from ..extensions import db
from ..models import Check
from ..services import checking
from ..services.api.openapi import document
from ..services.evidence import TITLES
from ..services.importing.worker import MAX_FILE_BYTES

bp = Blueprint("check", __name__, url_prefix="/check")
api_bp = Blueprint("check_api", __name__, url_prefix="/api/v1")
MULTIPART_OVERHEAD = 64 * 1024  # the form's boundaries and headers around the one file

CHECK_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "image_id": {"type": "integer"},
        "sha256": {"type": "string"},
        "version": {"type": ["string", "null"]},
        "p_fake": {"type": ["number", "null"]},
        "verdict": {"enum": ["real", "fake", "uncertain"]},
        "threshold": {"type": ["number", "null"]},
        "ood_score": {"type": ["number", "null"]},
        "out_of_distribution": {"type": "boolean"},
        "evidence": {"type": "object"},
        "similar": {"type": "array", "items": {"type": "object"}},
        "url": {"type": "string"},
        "state": {"enum": ["done", "pending", "failed"]},
    },
}


def _check_or_404(check_id: int) -> Check:
    check = db.session.get(Check, check_id)
    if check is None:
        abort(404, description=f"No check {check_id}.")
    return check


def _answer(check: Check, created: bool):
    payload = checking.to_json(check)
    status = 202 if payload["state"] == "pending" else (201 if created else 200)
    response = jsonify(payload)
    response.status_code = status
    if created:
        response.headers["Location"] = payload["url"]
    return response


def _created_check() -> Check:
    limit = current_app.config.get("MAX_IMAGE_FILE_BYTES", MAX_FILE_BYTES)
    if (request.content_length or 0) > limit + MULTIPART_OVERHEAD:
        raise checking.CheckError(f"file too large: over {limit:,} bytes", 413)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise checking.CheckError("send one image in the multipart field 'file'", 400)
    return checking.create(upload.read(), upload.filename, current_user.id)


@api_bp.errorhandler(checking.CheckError)
@bp.errorhandler(checking.CheckError)
def _check_error(error: checking.CheckError):
    known = error.status in (400, 409, 413, 422)
    return json_error(error.status, str(error), None if known else "Internal Server Error")


# ----------------------------------------------------------------------------- API


@api_bp.post("/checks")
@reviewer_required
@document(
    response=CHECK_SCHEMA,
    status=201,
    also=(202,),
    errors=(400, 413, 422, 429),
    files={"file": "one image (JPEG, PNG, WebP, ...)"},
)
def create_check():
    """Check one image (multipart field ``file``): stored in the ``checks`` dataset, scored by
    the active version. 201 with the result, or 202 with its ``url`` while scoring runs;
    400/422 with the reason (nothing stored) for a file that is not a usable image."""
    check = checking.wait(_created_check())
    return _answer(check, created=True)


@api_bp.get("/checks/<int:check_id>")
@reviewer_required
@document(response=CHECK_SCHEMA, also=(202,), errors=(404,))
def get_check(check_id: int):
    """A check's result again (202 while it is still being scored)."""
    return _answer(_check_or_404(check_id), created=False)


@api_bp.post("/checks/<int:check_id>/review")
@reviewer_required
@document(response=CHECK_SCHEMA, also=(202,), errors=(404, 409))
def send_check_to_review(check_id: int):
    """Send a check's image to the review queue (checks enter it only when sent)."""
    check = checking.send_to_review(_check_or_404(check_id))
    return _answer(check, created=False)


# ----------------------------------------------------------------------------- pages


@bp.get("/")
@reviewer_required
def index():
    """The Check page: drop, paste or choose images; the results appear below."""
    return render_template("check/index.html")


@bp.get("/<int:check_id>")
@reviewer_required
def show(check_id: int):
    """One check's verdict and every evidence item (the page polls while scoring runs)."""
    check = _check_or_404(check_id)
    return render_template("check/show.html", check=checking.to_json(check), titles=TITLES)


@bp.post("/<int:check_id>/review")
@reviewer_required
def send_to_review(check_id: int):
    """The "send to review" button: the image joins the queue; open it on the desk."""
    check = checking.send_to_review(_check_or_404(check_id))
    return redirect(url_for("review.desk", image=check.image_id))
