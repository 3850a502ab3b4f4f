"""The review desk: the keyboard-first review screen, the admins' escalation list, image files.

The screen itself is static HTML plus ``static/js/review.js``, which talks to the JSON API
(``/api/v1/review/...``) so that a decision and the next image never wait for a page load.
"""

from __future__ import annotations

from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    send_file,
)
from flask_login import current_user

from ..auth import admin_required, reviewer_required
from ..errors import json_error
from ..extensions import db
from ..inputs import int_arg
from ..models import Image, Job, ModelVersion, Split
from ..services import storage
from ..services.records import catalog
from ..services.review import buckets, heatmaps, item_details, materialise

bp = Blueprint("review", __name__, url_prefix="/review")

FILTER_NAMES = ("bucket", "dataset", "split", "verdict")
IMAGE_CACHE_SECONDS = 24 * 3600  # an image id always names the same content (sha256)
MIME_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}


@bp.get("/")
@reviewer_required
def desk():
    """The review screen. ``?image=ID`` opens that image first; filters come from the query."""
    s = buckets.settings()
    filters = {name: request.args.get(name, "") for name in FILTER_NAMES}
    return render_template(
        "review/desk.html",
        buckets=[(name, buckets.BUCKET_TITLES[name]) for name in s.buckets],
        datasets=catalog.open_dataset_names(),
        splits=[split.value for split in Split],
        filters=filters,
        open_image=int_arg("image", None, 1),
        has_model=materialise.active_version_id() is not None,
        settings=s,
        min_display_ms=max(0, int(current_app.config["DESK_MIN_DISPLAY_MS"])),
    )


@bp.get("/escalations")
@admin_required
def escalations():
    """Items whose reviewers disagree, for an admin to decide."""
    return render_template("review/escalations.html", items=item_details.escalations())


@bp.get("/image/<int:image_id>/original")
@reviewer_required
def original(image_id: int):
    """The original file, at full resolution."""
    image = _image_or_404(image_id)
    return _send(original_or_404(image), MIME_TYPES.get(image.format.upper()))


@bp.get("/image/<int:image_id>/thumbnail")
@reviewer_required
def thumbnail(image_id: int):
    """The small JPEG made at import; the original when there is none."""
    image = _image_or_404(image_id)
    path = storage.servable_file(storage.thumbnail_path(image.sha256), storage.thumbnails_root())
    if path is not None:
        return _send(path, "image/jpeg")
    return _send(original_or_404(image), MIME_TYPES.get(image.format.upper()))


@bp.get("/image/<int:image_id>/heatmap.png")
@reviewer_required
def heatmap(image_id: int):
    """Grad-CAM heatmap of the active model on this image: the PNG once the job worker made it.

    Until then 202 with the job computing it (the page polls); 503 when it cannot be made, with
    the reason. ``?retry=1`` tries again after a failure. Never computed in the web process.
    """
    _image_or_404(image_id)
    version_id = materialise.active_version_id()
    if version_id is None:
        return _unavailable("No active model version: an admin must train and activate one first.")
    version = db.session.get(ModelVersion, version_id)
    path = heatmaps.cached(image_id, version)
    if path is None and not Path(version.checkpoint_path or "").is_file():
        return _unavailable(f"Version {version.name} has no checkpoint to compute a heatmap with.")
    if path is None:
        retry = request.args.get("retry") == "1"
        status = heatmaps.request_heatmap(image_id, version, current_user.id, retry=retry)
        if status.failed:
            reason = (status.job.error or status.job.state).strip().splitlines()[-1]
            return _unavailable(f"Could not compute the heatmap: {reason}")
        if status.path is None:
            return _computing(status.job)
        path = status.path
    response = send_file(path, mimetype="image/png", conditional=True)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def _computing(job: Job):
    """202: the heatmap job is queued or running; ask again shortly."""
    body = {"state": job.state, "job_id": job.id, "message": "Computing the heatmap…"}
    response = jsonify(body)
    response.status_code = 202
    response.headers["Retry-After"] = "1"
    response.headers["Cache-Control"] = "no-store"
    return response


def _image_or_404(image_id: int) -> Image:
    image = db.session.get(Image, image_id)
    if image is None:
        abort(404, description=f"No image {image_id}.")
    return image


def original_or_404(image: Image):
    """The stored original, only from inside the image store (no link out of it)."""
    path = storage.servable_file(storage.original_path(image), storage.images_root())
    if path is None:
        current_app.logger.warning("image file missing: %s", storage.original_path(image))
        abort(404, description="The image file is missing from the image store.")
    return path


def _send(path, mimetype: str | None):
    response = send_file(path, mimetype=mimetype, max_age=IMAGE_CACHE_SECONDS, conditional=True)
    response.headers["Cache-Control"] = f"private, max-age={IMAGE_CACHE_SECONDS}, immutable"
    return response


def _unavailable(message: str):
    """503 with the reason, as JSON for scripts and the screen, as text for a browser tab."""
    if request.accept_mimetypes.best == "application/json":
        return json_error(503, message)
    return Response(message, status=503, mimetype="text/plain")
