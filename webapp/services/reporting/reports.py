"""Misclassification reports: where a version's verdict and the effective label disagree, and
where reviewers overrode the model.

Rows are produced chunk by chunk (keyset pages of image ids) and written to the file as they
come, so a report over every image never sits in memory. Three formats: CSV, JSON (streamed as
text) and a self-contained HTML page with embedded thumbnails and the version's metrics.

(Over 400 lines: the three formats share the row builder and the chunked reader; a split along
formats is the next step when one of them grows.)
"""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import tempfile
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app, render_template
from sqlalchemy import and_, func, select
from sqlalchemy.orm import aliased

from ...extensions import db
from ...models import Dataset, DatasetImage, Image, ModelVersion, Prediction, ReviewDecision, Split
from ...models import User as UserRow
from ..evidence import records as evidence_records
from ..evidence.records import REPORT_COLUMNS
from ..records import versions
from ..records.labels import effective_labels
from ..records.lookup import UnknownName
from ..review import blind_review
from .csv_safe import safe_row

COLUMNS = (
    "image_id",
    "file_name",
    "dataset",
    "split",
    "label",
    "label_source",
    "verdict",
    "confidence",
    "p_fake",
    "ood_score",
    "reasons",
    "decisions",
    *REPORT_COLUMNS,  # what the image's own evidence says (webapp.services.evidence)
)
FORMATS = ("csv", "json", "html")
LABEL_CHOICES = ("real", "fake", "unsure")
CLASS_INDEX = {"real": 0, "fake": 1}
CHUNK = 1000
THUMBNAIL_BATCH = 200
ROWS_MARKER = "<!--REPORT-ROWS-->"

Progress = Callable[[int, int], None]


@dataclass
class Scope:
    """Which version's calls, on which images (a dataset and/or a split; all when None)."""

    version: ModelVersion
    dataset: Dataset | None = None
    split: str | None = None
    reader: Any = None  # who the report is for (blind review); None: everything shows

    def describe(self) -> dict[str, str | float | None]:
        """The scope as the report states it, with the version's FAKE threshold (its verdicts
        were made at it)."""
        return {
            "version": self.version.name,
            "threshold": self.version.threshold,
            "dataset": self.dataset.name if self.dataset else None,
            "split": self.split,
        }


def resolve_scope(
    version_name: str | None = None, dataset_name: str | None = None, split: str | None = None
) -> Scope:
    """Look the names up; ValueError with a clear message for anything unknown."""
    version = versions.get_version(version_name or None)
    dataset = None
    if dataset_name:
        dataset = db.session.scalar(select(Dataset).where(Dataset.name == dataset_name))
        if dataset is None:
            raise UnknownName(f"unknown dataset {dataset_name!r}")
    check_split(split)
    return Scope(version, dataset, split or None)


def check_split(split: str | None) -> None:
    """ValueError unless ``split`` is empty or one of train, val, test."""
    if split and split not in {s.value for s in Split}:
        raise ValueError(f"unknown split {split!r} (use train, val or test)")


def in_scope(query, dataset: Dataset | None, split: str | None):
    """Narrow a query over Image to a dataset (membership, not just first arrival) and split."""
    if dataset is not None:
        members = select(DatasetImage.image_id).where(DatasetImage.dataset_id == dataset.id)
        query = query.where(Image.id.in_(members))
    if split:
        query = query.where(Image.split == split)
    return query


def count_images(dataset: Dataset | None, split: str | None) -> int:
    """How many images a scope covers (for progress)."""
    subquery = in_scope(select(Image.id), dataset, split).subquery()
    return db.session.scalar(select(func.count()).select_from(subquery)) or 0


def page_size() -> int:
    """Images per page of the keyset iteration (read at call time, so tests can shrink it)."""
    return CHUNK


def image_pages(scope: Scope, chunk: int | None = None) -> Iterator[list]:
    """Pages of (image, dataset name, this version's prediction) rows in id order."""
    query = in_scope(
        select(
            Image.id,
            Image.file_name,
            Image.split,
            Image.label,
            Image.sha256,
            Dataset.name.label("dataset"),
            Prediction.p_fake,
            Prediction.verdict,
            Prediction.ood_score,
        )
        .join(Dataset, Dataset.id == Image.dataset_id)
        .outerjoin(
            Prediction,
            and_(Prediction.image_id == Image.id, Prediction.model_version_id == scope.version.id),
        )
        .order_by(Image.id),
        scope.dataset,
        scope.split,
    )
    yield from id_pages(db.session.execute, query, chunk)


def id_pages(run: Callable, query, chunk: int | None = None):
    """Keyset pages of ``query`` (ordered by Image.id) through ``run`` (``db.session.execute`` for
    rows, ``db.session.scalars`` for entities): each page starts after the last id of the one
    before, so a long export never holds more than one page or pays for an OFFSET."""
    last = 0
    while True:
        page = run(query.where(Image.id > last).limit(chunk or page_size())).all()
        if not page:
            return
        yield page
        last = page[-1].id


def active_decisions(image_ids: Sequence[int], reader=None) -> dict[int, list[dict[str, Any]]]:
    """Each image's standing label decisions (real, fake, unsure; undone ones left out).

    Every decision carries the verdict the reviewer was shown (the prediction of the version
    recorded with the decision) and whether it overrode it. Under blind review, other
    reviewers' decisions on images still waiting for reviews are left out for ``reader``.
    """
    shown = aliased(Prediction, name="shown")
    rows = db.session.execute(
        select(
            ReviewDecision.id,
            ReviewDecision.image_id,
            ReviewDecision.user_id,
            ReviewDecision.choice,
            ReviewDecision.note,
            ReviewDecision.created_at,
            ReviewDecision.reverts_id,
            UserRow.username,
            ModelVersion.name.label("version"),
            shown.verdict.label("verdict_shown"),
        )
        .join(UserRow, UserRow.id == ReviewDecision.user_id)
        .outerjoin(ModelVersion, ModelVersion.id == ReviewDecision.model_version_id)
        .outerjoin(
            shown,
            and_(
                shown.image_id == ReviewDecision.image_id,
                shown.model_version_id == ReviewDecision.model_version_id,
            ),
        )
        .where(ReviewDecision.image_id.in_(list(image_ids)))
        .order_by(ReviewDecision.id)
    ).all()
    reverted = {row.reverts_id for row in rows if row.reverts_id is not None}
    standing = [row for row in rows if row.choice in LABEL_CHOICES and row.id not in reverted]
    entries = [
        {
            "image_id": row.image_id,
            "user_id": row.user_id,
            "reviewer": row.username,
            "choice": row.choice,
            "note": row.note or "",
            "at": row.created_at.isoformat(timespec="seconds") + "Z",
            "version": row.version,
            "verdict_shown": row.verdict_shown,
            "override": row.choice in CLASS_INDEX
            and row.verdict_shown is not None
            and row.choice != row.verdict_shown,
        }
        for row in standing
    ]
    decisions: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for entry in blind_review.redact_decisions(reader, entries):
        image_id = entry.pop("image_id")
        entry.pop("user_id")
        if entry["choice"] != blind_review.HIDDEN:
            decisions[image_id].append(entry)
    return decisions


def label_source(label: str, decisions: Sequence[dict[str, Any]]) -> str:
    """'review' when the label is what reviewers chose, else 'import'."""
    return "review" if any(d["choice"] == label for d in decisions) else "import"


@dataclass
class Tally:
    """What the summary needs, gathered while rows stream past (numbers only, not rows)."""

    images: int = 0
    scored: int = 0
    rows: int = 0
    misclassified: int = 0
    overrides: int = 0
    labels: array = field(default_factory=lambda: array("b"))
    p_fake: array = field(default_factory=lambda: array("d"))
    threshold: float = 0.5  # the version's operating point

    def metrics(self) -> dict[str, Any]:
        """The version's metrics on the labelled, scored images of the scope."""
        from model.metrics import classification_metrics, reliability_curve

        if not self.labels:
            return {"n": 0}
        labels, p_fake = list(self.labels), list(self.p_fake)
        metrics = classification_metrics(labels, p_fake, self.threshold)
        metrics["reliability"] = reliability_curve(labels, p_fake)
        return metrics


def report_row(image, label: str, decisions: list[dict[str, Any]], dataset: str) -> dict | None:
    """The report's row for one image, or None when it is neither wrong nor overridden."""
    misclassified = label in CLASS_INDEX and image.verdict is not None and image.verdict != label
    overridden = any(d["override"] for d in decisions)
    if not (misclassified or overridden):
        return None
    confidence = None
    if image.p_fake is not None:
        confidence = image.p_fake if image.verdict == "fake" else 1.0 - image.p_fake
    return {
        "image_id": image.id,
        "file_name": image.file_name,
        "dataset": dataset,
        "split": image.split,
        "label": label,
        "label_source": label_source(label, decisions),
        "verdict": image.verdict,
        "confidence": confidence,
        "p_fake": image.p_fake,
        "ood_score": image.ood_score,
        "reasons": [
            r for r, on in (("misclassified", misclassified), ("override", overridden)) if on
        ],
        "decisions": decisions,
        "sha256": image.sha256,
    }


def iter_rows(scope: Scope, tally: Tally | None = None, progress: Progress | None = None):
    """Yield the report's rows in image id order, updating ``tally`` as images go by."""
    tally = tally if tally is not None else Tally()
    total = count_images(scope.dataset, scope.split) if progress else 0
    for page in image_pages(scope):
        ids = [image.id for image in page]
        labels = effective_labels(ids)
        decisions = active_decisions(ids, scope.reader)
        evidence = evidence_records.for_images(ids)
        for image in page:
            label = labels.get(image.id, image.label)
            tally.images += 1
            if image.p_fake is not None:
                tally.scored += 1
                if label in CLASS_INDEX:
                    tally.labels.append(CLASS_INDEX[label])
                    tally.p_fake.append(image.p_fake)
            dataset = scope.dataset.name if scope.dataset else image.dataset
            row = report_row(image, label, decisions.get(image.id, []), dataset)
            if row is not None:
                row.update(evidence.get(image.id) or dict.fromkeys(REPORT_COLUMNS, ""))
                tally.rows += 1
                tally.misclassified += "misclassified" in row["reasons"]
                tally.overrides += "override" in row["reasons"]
                yield row
        if progress:
            progress(tally.images, total)


def decisions_text(decisions: Sequence[dict[str, Any]]) -> str:
    """Decisions flattened for one CSV cell: ``who: choice (note) [shown v1 fake, at] | ...``."""
    parts = []
    for d in decisions:
        note = f" ({d['note']})" if d["note"] else ""
        shown = f"shown {d['version']} {d['verdict_shown']}, " if d["verdict_shown"] else ""
        parts.append(f"{d['reviewer']}: {d['choice']}{note} [{shown}{d['at']}]")
    return " | ".join(parts)


def csv_cells(row: dict[str, Any]) -> list[Any]:
    """A row as CSV cells, in COLUMNS order."""
    cells = dict(row, reasons=";".join(row["reasons"]), decisions=decisions_text(row["decisions"]))
    for key in ("confidence", "p_fake", "ood_score"):
        cells[key] = "" if cells[key] is None else f"{cells[key]:.6f}"
    cells["verdict"] = cells["verdict"] or ""
    return [cells[column] for column in COLUMNS]


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON shows it (the COLUMNS, nothing internal)."""
    return {column: row[column] for column in COLUMNS}


def write_csv(path: Path, scope: Scope, tally: Tally, progress: Progress | None = None) -> None:
    """A header row, then one row per image."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in iter_rows(scope, tally, progress):
            writer.writerow(safe_row(csv_cells(row)))


def write_json(path: Path, scope: Scope, tally: Tally, progress: Progress | None = None) -> None:
    """``{"version", "dataset", "split", "rows": [...], "summary"}``, written row by row."""
    with open(path, "w", encoding="utf-8") as handle:
        head = json.dumps(scope.describe())[:-1]
        handle.write(head + ', "rows": [')
        for index, row in enumerate(iter_rows(scope, tally, progress)):
            handle.write(("," if index else "") + "\n" + json.dumps(public_row(row)))
        summary = summary_counts(tally)
        handle.write('\n], "summary": ' + json.dumps(summary) + "}\n")


def summary_counts(tally: Tally) -> dict[str, int]:
    """The counts a report states about itself."""
    return {
        "images": tally.images,
        "scored": tally.scored,
        "labelled_scored": len(tally.labels),
        "rows": tally.rows,
        "misclassified": tally.misclassified,
        "overrides": tally.overrides,
    }


def _sniff_mime(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def stored_thumbnail(sha256: str) -> tuple[bytes, str] | None:
    """The thumbnail made at import, if it is there and is an image a browser shows."""
    from .. import storage

    path = Path(storage.thumbnail_path(sha256))
    if not path.is_file():
        return None
    data = path.read_bytes()
    mime = _sniff_mime(data)
    return (data, mime) if mime else None


def _shrink(source: Path, size: int) -> tuple[bytes, str] | None:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(source) as picture:
            picture.draft("RGB", (size, size))
            picture = picture.convert("RGB")
            picture.thumbnail((size, size))
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=85)
    except (OSError, UnidentifiedImageError, PILImage.DecompressionBombError):
        return None
    return buffer.getvalue(), "image/jpeg"


def as_data_uri(found: tuple[bytes, str] | None) -> str | None:
    """Image bytes as a ``data:`` URI, so the report needs no other file."""
    if found is None:
        return None
    data, mime = found
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_uris(rows: Sequence[dict[str, Any]], size: int = 128) -> dict[int, str | None]:
    """Each row's thumbnail as a data URI: the stored one, else one made from the original
    (the originals of a whole batch are looked up in one query); None when neither reads."""
    from .. import storage

    uris = {row["image_id"]: as_data_uri(stored_thumbnail(row["sha256"])) for row in rows}
    missing = [image_id for image_id, uri in uris.items() if uri is None]
    if missing:
        for image in db.session.scalars(select(Image).where(Image.id.in_(missing))):
            source = Path(storage.original_path(image))
            if source.is_file():
                uris[image.id] = as_data_uri(_shrink(source, size))
    return uris


def batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive lists of at most ``size`` rows."""
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_html(path: Path, scope: Scope, tally: Tally, progress: Progress | None = None) -> None:
    """A page that opens offline: summary metrics and plots, then a row per image with its
    thumbnail embedded. Rows go to a scratch file first because the summary comes first."""
    # One template, rendered per row without the request's context processors (it needs none).
    row_template = current_app.jinja_env.get_template("reports/_report_row.html")
    with tempfile.TemporaryFile("w+", encoding="utf-8") as rows_file:
        for batch in batches(iter_rows(scope, tally, progress), THUMBNAIL_BATCH):
            thumbnails = thumbnail_uris(batch)
            for row in batch:
                thumbnail = thumbnails[row["image_id"]]
                rows_file.write(
                    row_template.render(row=row, thumbnail=thumbnail, decisions=row["decisions"])
                )
        page = render_page(scope, tally)
        head, _, tail = page.partition(ROWS_MARKER)
        rows_file.seek(0)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(head)
            shutil.copyfileobj(rows_file, handle)
            handle.write(tail)


def render_page(scope: Scope, tally: Tally) -> str:
    """The HTML report around the rows marker, with the summary and plots filled in."""
    from .plots import confusion_matrix_svg, reliability_svg

    metrics = tally.metrics()
    plots = {}
    if metrics.get("n"):
        plots = {
            "confusion": confusion_matrix_svg(metrics["confusion_matrix"], "Confusion matrix"),
            "reliability": reliability_svg([(scope.version.name, metrics["reliability"])]),
        }
    return render_template(
        "reports/report_document.html",
        scope=scope.describe(),
        version=scope.version,
        metrics=metrics,
        counts=summary_counts(tally),
        plots=plots,
        rows_marker=ROWS_MARKER,
    )


WRITERS = {"csv": write_csv, "json": write_json, "html": write_html}


def write_misclassified(
    path: Path | str,
    fmt: str,
    version_name: str | None = None,
    dataset_name: str | None = None,
    split: str | None = None,
    progress: Progress | None = None,
    reader=None,
) -> dict[str, Any]:
    """Write the misclassification report to ``path``; returns its scope and counts.

    The file appears only when complete (written beside it, then renamed), so a failed or
    cancelled run never leaves half a report under the final name. ``reader``: the user the
    report is for; blind review applies to their view of the decisions.
    """
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    scope = resolve_scope(version_name, dataset_name, split)
    scope.reader = reader
    path = Path(path)
    partial = path.with_name(path.name + ".part")
    tally = Tally(threshold=scope.version.threshold)
    try:
        WRITERS[fmt](partial, scope, tally, progress)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return {**scope.describe(), "format": fmt, **summary_counts(tally)}
