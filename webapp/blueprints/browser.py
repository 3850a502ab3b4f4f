"""The image browser (admins): a thumbnail grid of any dataset, filtered and sorted, one image's
full record, and actions on a selection."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth import admin_required
from ..extensions import db
from ..models import Image
from ..services.admin import image_browser
from ..services.evidence import records as evidence_records

bp = Blueprint("browser", __name__, url_prefix="/admin/images")


@bp.get("/")
@admin_required
def index():
    """The grid: filters in the query string, keyset pages via ``after``."""
    chosen = image_browser.BrowseFilter.from_args(request.args)
    rows, next_cursor = image_browser.page(chosen, after=request.args.get("after", ""))
    query = {k: v for k, v in request.args.items() if k != "after" and v}
    return render_template(
        "browser/index.html",
        rows=rows,
        chosen=chosen,
        choices=image_browser.choices(),
        sorts=image_browser.SORTS,
        next_url=url_for("browser.index", **query, after=next_cursor) if next_cursor else None,
        first_url=url_for("browser.index", **query) if request.args.get("after") else None,
    )


@bp.get("/<int:image_id>")
@admin_required
def image_record(image_id: int):
    """One image: metadata, datasets, every version's prediction, every decision, and the
    evidence stored at import (credentials, metadata, watermark, near duplicates)."""
    image = db.session.get(Image, image_id)
    if image is None:
        abort(404)
    return render_template(
        "browser/image.html",
        image=image,
        record=image_browser.image_record(image),
        evidence=evidence_records.for_image(image.id),
    )


@bp.post("/selection")
@admin_required
def selection():
    """Act on the selected images: send them to the review queue, or make them a new
    evaluation-only dataset."""
    ids = [int(value) for value in request.form.getlist("image_id") if value.isdigit()]
    if request.form.get("action") == "review":
        try:
            sent, before = image_browser.send_to_review(ids, current_user)
        except ValueError as error:
            flash(f"Nothing was changed: {error}.", "error")
        else:
            again = f" ({before} had been sent before)" if before else ""
            flash(f"{sent} images sent to the review queue{again}.", "info")
        return redirect(request.referrer or url_for("browser.index"))
    try:
        dataset = image_browser.new_evaluation_dataset(
            request.form.get("new_dataset", ""), ids, current_user
        )
    except ValueError as error:
        flash(f"Nothing was changed: {error}.", "error")
        return redirect(request.referrer or url_for("browser.index"))
    flash(f"Evaluation-only dataset {dataset.name} created with {len(ids)} images.", "info")
    return redirect(url_for("datasets.detail", dataset_id=dataset.id))
