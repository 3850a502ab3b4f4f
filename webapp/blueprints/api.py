"""JSON API under /api/v1: the review queue and the review desk's requests.

State-changing requests carry the CSRF token in the ``X-CSRFToken`` header (Flask-WTF checks it).
Every response says how long the server worked on it in a ``Server-Timing`` header, which the queue
benchmark reads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, abort, g, jsonify, request, url_for
from flask_login import current_user

from ..auth import admin_required, reviewer_required
from ..inputs import int_arg, int_field, int_list, json_object, object_field, str_field
from ..services import queue, reviews
from ..services.queue import QueueError, QueueFilter

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_LIST = 10_000


@bp.before_request
def _start_timer() -> None:
    g.api_started = time.perf_counter()


@bp.after_request
def _server_timing(response):
    started = g.get("api_started")
    if started is not None:
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
    return response


@bp.errorhandler(QueueError)
def _queue_error(error: QueueError):
    status = 409 if isinstance(error, queue.ItemHeld) else 400
    return _error(status, "Conflict" if status == 409 else "Bad Request", str(error))


@bp.errorhandler(reviews.ReviewError)
def _review_error(error: reviews.ReviewError):
    return _error(error.status, "Not Found" if error.status == 404 else "Bad Request", str(error))


def _error(status: int, title: str, message: str):
    return jsonify({"error": title, "message": message, "status": status}), status


# ----------------------------------------------------------------------------- queue


@bp.get("/queue")
@reviewer_required
def queue_list():
    """The open queue in order: ``?bucket= &dataset= &split= &verdict= &limit= &offset=``."""
    filters = filters_from(request.args)
    limit = int_arg("limit", 50, 0, MAX_LIST)
    offset = int_arg("offset", 0, 0)
    items = queue.list_items(filters, limit=limit, offset=offset)
    return jsonify({"items": [item.to_dict() for item in items], "limit": limit, "offset": offset})


@bp.get("/queue/counts")
@reviewer_required
def queue_counts():
    """Open items per bucket, in the configured order, with the same filters as the queue."""
    counts = queue.counts(filters_from(request.args))
    return jsonify(
        {
            "counts": counts,
            "titles": {name: queue.BUCKET_TITLES[name] for name in counts},
            "total": sum(counts.values()),
        }
    )


def filters_from(source: Mapping[str, Any]) -> QueueFilter:
    """A QueueFilter from query arguments or a JSON object; blank values mean any."""

    def value(name: str) -> str | None:
        raw = source.get(name)
        if raw is None:
            return None
        if not isinstance(raw, str):
            abort(400, description=f"filter {name} must be a string")
        return raw.strip() or None

    return QueueFilter(
        dataset=value("dataset"),
        split=value("split"),
        bucket=value("bucket"),
        verdict=value("verdict"),
    )


# ----------------------------------------------------------------------------- review desk


@bp.post("/review/claim")
@reviewer_required
def review_claim():
    """Lease the next item to me. Body: ``{"filters": {...}, "holding": [ids], "image_id": id}``.

    ``image_id`` asks for one named image (opened from a link, or resolving an escalation).
    """
    body = json_object()
    viewer = reviews.Viewer.of(current_user)
    if body.get("image_id") is not None:
        claim = queue.claim_image(viewer.id, int_field(body, "image_id"))
    else:
        holding = int_list(body, "holding") or []
        claim = queue.claim_next(viewer.id, filters_from(object_field(body, "filters")), holding)
    if claim is None:
        return jsonify({"item": None})
    return jsonify({"item": item_payload(claim.image_id, viewer, claim)})


@bp.post("/review/release")
@reviewer_required
def review_release():
    """Give back my leases: ``{"image_ids": [...]}``, or all of them without the field."""
    image_ids = int_list(json_object(), "image_ids")
    return jsonify({"released": queue.release(current_user.id, image_ids)})


@bp.post("/review/decisions")
@reviewer_required
def review_decide():
    """Record my decision: ``{"image_id", "choice", "note", "model_version_id"}``.

    ``choice`` is real, fake, unsure or skip; ``model_version_id`` the version I was shown.
    """
    body = json_object()
    version = body.get("model_version_id")
    viewer = reviews.Viewer.of(current_user)
    outcome = reviews.decide(
        viewer,
        int_field(body, "image_id"),
        str_field(body, "choice"),
        note=str_field(body, "note"),
        model_version_id=int_field(body, "model_version_id") if version is not None else None,
    )
    result = outcome.to_dict() | {"stats": reviews.reviewer_counts(viewer.id)}
    return jsonify(result), 201


@bp.post("/review/undo")
@reviewer_required
def review_undo():
    """Undo my latest decision; the item comes back to me (``item``) unless someone holds it."""
    viewer = reviews.Viewer.of(current_user)
    outcome = reviews.undo_last(viewer)
    result = outcome.to_dict() | {"stats": reviews.reviewer_counts(viewer.id)}
    try:
        claim = queue.claim_image(viewer.id, outcome.decision["image_id"])
        result["item"] = item_payload(claim.image_id, viewer, claim)
    except queue.ItemHeld:
        result["item"] = None
    return jsonify(result), 201


@bp.get("/review/items/<int:image_id>")
@reviewer_required
def review_item(image_id: int):
    """Everything the review screen shows about one image, with its decision history."""
    return jsonify(item_payload(image_id, reviews.Viewer.of(current_user)))


@bp.get("/review/stats")
@reviewer_required
def review_stats():
    """My counts (today, all time) and my agreement with other reviewers."""
    return jsonify(reviews.reviewer_stats(current_user.id))


@bp.get("/review/escalations")
@admin_required
def review_escalations():
    """Items whose reviewers disagree, waiting for an admin's decision."""
    return jsonify({"items": reviews.escalations()})


def item_payload(
    image_id: int, viewer: reviews.Viewer, claim: queue.Claim | None = None
) -> dict[str, Any]:
    """The item details plus the URLs of its pictures and, when leased, the lease expiry."""
    version_id = claim.model_version_id if claim is not None else None
    details = reviews.item_details(image_id, viewer, version_id)
    details["urls"] = {
        "image": url_for("review.original", image_id=image_id),
        "thumbnail": url_for("review.thumbnail", image_id=image_id),
        "heatmap": url_for("review.heatmap", image_id=image_id),
        "desk": url_for("review.desk", image=image_id),
    }
    if claim is not None:
        details["lease_expires_at"] = claim.expires_at.isoformat(timespec="seconds") + "Z"
    return details
