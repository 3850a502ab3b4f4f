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
from ..errors import json_error
from ..inputs import MAX_ID, int_arg
from ..services.api import schemas
from ..services.api.openapi import document, query_param
from ..services.api.schemas import dump, parse_body
from ..services.evidence import records as evidence_records
from ..services.records.lookup import http_status
from ..services.review import buckets, decisions, item_details, leases, queue, statistics
from ..services.review.buckets import QueueError, QueueFilter

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
    status = 409 if isinstance(error, buckets.ItemHeld) else http_status(error)
    return json_error(status, str(error))


@bp.errorhandler(decisions.ReviewError)
def _review_error(error: decisions.ReviewError):
    title = None if error.status in (404, 409) else "Bad Request"
    return json_error(error.status, str(error), title)


# ----------------------------------------------------------------------------- queue


FILTER_QUERY = [  # a blank value means any
    query_param("bucket", description="a queue bucket", enum=["", *buckets.BUCKET_TITLES]),
    query_param("dataset", description="dataset name"),
    query_param("split", description="train, val or test", enum=["", "train", "val", "test"]),
    query_param("verdict", description="the model's verdict", enum=["", "real", "fake"]),
]


@bp.get("/queue")
@document(
    query=[
        *FILTER_QUERY,
        query_param("limit", "integer", f"at most {MAX_LIST}", minimum=0, maximum=MAX_LIST),
        query_param("offset", "integer", "items to skip", minimum=0, maximum=MAX_ID),
    ],
    response=schemas.QueuePage,
    errors=(400, 404),
)
@reviewer_required
def queue_list():
    """The open queue in order: ``?bucket= &dataset= &split= &verdict= &limit= &offset=``."""
    filters = filters_from(request.args)
    limit = int_arg("limit", 50, 0, MAX_LIST, blank_is_absent=False)
    offset = int_arg("offset", 0, 0, blank_is_absent=False)
    items = queue.list_items(filters, limit=limit, offset=offset)
    listing = {"items": [item.to_dict() for item in items], "limit": limit, "offset": offset}
    return jsonify(dump(schemas.QueuePage, listing))


@bp.get("/queue/counts")
@document(query=FILTER_QUERY, response=schemas.QueueCounts, errors=(400, 404))
@reviewer_required
def queue_counts():
    """Open items per bucket, in the configured order, with the same filters as the queue."""
    counts = queue.counts(filters_from(request.args))
    summary = {
        "counts": counts,
        "titles": {name: buckets.BUCKET_TITLES[name] for name in counts},
        "total": sum(counts.values()),
    }
    return jsonify(dump(schemas.QueueCounts, summary))


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
@document(body=schemas.ClaimRequest, response=schemas.Claimed, errors=(400, 404, 409, 413))
@reviewer_required
def review_claim():
    """Lease the next item to me. Body: ``{"filters": {...}, "holding": [ids], "image_id": id,
    "skipped_again": bool}``.

    ``image_id`` asks for one named image (opened from a link, or resolving an escalation);
    ``skipped_again`` also serves the items I skipped twice. Without an item, ``left`` says what
    the filters still hold for others.
    """
    body = parse_body(schemas.ClaimRequest)
    viewer = decisions.Viewer.of(current_user)
    if body.image_id is not None:
        claim = leases.claim_image(viewer.id, body.image_id)
    else:
        filters = body.filters.model_dump() if body.filters else {}
        claim = leases.claim_next(
            viewer.id, filters_from(filters), body.holding or [], body.skipped_again
        )
        if claim is None:  # say where the rest is, for the end screen
            left = leases.left_for(viewer.id, filters_from(filters))
            return jsonify(dump(schemas.Claimed, {"item": None, "left": left}))
    item = item_payload(claim.image_id, viewer, claim) if claim is not None else None
    return jsonify(dump(schemas.Claimed, {"item": item}))


@bp.post("/review/release")
@document(body=schemas.ReleaseRequest, response=schemas.Released, errors=(400, 413))
@reviewer_required
def review_release():
    """Give back my leases: ``{"image_ids": [...]}``, or all of them without the field."""
    image_ids = parse_body(schemas.ReleaseRequest).image_ids
    return jsonify(dump(schemas.Released, {"released": leases.release(current_user.id, image_ids)}))


@bp.post("/review/decisions")
@document(
    body=schemas.DecisionRequest,
    response=schemas.DecisionOutcome,
    status=201,
    also=(200,),
    errors=(400, 404, 409, 413),
)
@reviewer_required
def review_decide():
    """Record my decision: ``{image_id, choice, note, model_version_id, idempotency_key}``.

    ``choice`` is real, fake, unsure or skip; ``model_version_id`` the version I was shown. 201
    for a new decision; 200 with the first one (``replayed``) when a request with the same
    ``idempotency_key`` was recorded before; 409 without a lease on the item or once decided.
    """
    body = parse_body(schemas.DecisionRequest)
    viewer = decisions.Viewer.of(current_user)
    outcome = decisions.decide(
        viewer,
        body.image_id,
        body.choice,
        note=body.note or "",
        model_version_id=body.model_version_id,
        idempotency_key=body.idempotency_key,
    )
    result = outcome.to_dict() | {"stats": statistics.reviewer_counts(viewer.id)}
    return jsonify(dump(schemas.DecisionOutcome, result)), 200 if outcome.replayed else 201


@bp.post("/review/undo")
@document(response=schemas.DecisionOutcome, status=201, errors=(404, 409))
@reviewer_required
def review_undo():
    """Undo my latest decision; the item comes back to me (``item``) unless someone holds it."""
    viewer = decisions.Viewer.of(current_user)
    outcome = decisions.undo_last(viewer)
    result = outcome.to_dict() | {"stats": statistics.reviewer_counts(viewer.id)}
    try:
        claim = leases.claim_image(viewer.id, outcome.decision["image_id"])
        result["item"] = item_payload(claim.image_id, viewer, claim)
    except buckets.ItemHeld:
        result["item"] = None
    return jsonify(dump(schemas.DecisionOutcome, result)), 201


@bp.get("/review/items/<int:image_id>")
@document(response=schemas.ReviewItem, errors=(404,))
@reviewer_required
def review_item(image_id: int):
    """Everything the review screen shows about one image, with its decision history."""
    item = item_payload(image_id, decisions.Viewer.of(current_user))
    return jsonify(dump(schemas.ReviewItem, item))


@bp.get("/review/stats")
@document(response=schemas.ReviewerStats)
@reviewer_required
def review_stats():
    """My counts (today, all time) and my agreement with other reviewers."""
    return jsonify(dump(schemas.ReviewerStats, statistics.reviewer_stats(current_user.id)))


@bp.get("/review/escalations")
@document(response=schemas.Escalations)
@admin_required
def review_escalations():
    """Items whose reviewers disagree, waiting for an admin's decision."""
    return jsonify(dump(schemas.Escalations, {"items": item_details.escalations()}))


def item_payload(
    image_id: int, viewer: decisions.Viewer, claim: leases.Claim | None = None
) -> dict[str, Any]:
    """The item details plus the URLs of its pictures and, when leased, the lease expiry."""
    version_id = claim.model_version_id if claim is not None else None
    details = item_details.item_details(image_id, viewer, version_id)
    details["urls"] = {
        "image": url_for("review.original", image_id=image_id),
        "thumbnail": url_for("review.thumbnail", image_id=image_id),
        "heatmap": url_for("review.heatmap", image_id=image_id),
        "desk": url_for("review.desk", image=image_id),
    }
    details["evidence"] = evidence_records.for_image(image_id)
    if claim is not None:
        details["lease_expires_at"] = claim.expires_at.isoformat(timespec="seconds") + "Z"
    return details
