"""Checking one image: store it in the evaluation-only dataset ``checks``, score it with the
active version in the job worker, and answer with the verdict beside its evidence.

Owns the ``checks`` rows and the check JSON (a contract: ``id``, ``image_id``, ``sha256``,
``version``, ``p_fake``, ``verdict``, ``threshold``, ``ood_score``, ``out_of_distribution``,
``evidence``, ``similar``, ``url``). The image goes through the importer like any other, so the
same bad-input rules apply and nothing is stored for a rejected file. Scoring runs in the job
worker (:mod:`.job`), which holds the network: the web process never loads PyTorch, it waits a
short while for the job and otherwise answers "pending" with the URL to ask again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import secrets
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from typing import Any

from flask import current_app, url_for
from sqlalchemy import select

from ...extensions import db
from ...jobs import submit, wait_for
from ...models import Check, Image, ImageEvidence, Job, JobState, utcnow
from ..evidence import TITLES, phash, similar
from ..importing.importer import ImportRefused, import_path
from ..importing.upload import safe_relative_path, uploads_root
from ..review import buckets, materialise

DATASET = buckets.CHECKS_DATASET
OOD_WARNING = "unlike the training data: the verdict is unreliable"


class CheckError(ValueError):
    """A check that cannot be made; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Verdict:
    """The model's answer about one image at the version's operating threshold."""

    p_fake: float
    threshold: float
    low: float
    high: float

    @property
    def word(self) -> str:
        """ "fake" above the uncertain band, "real" below it, "uncertain" inside it."""
        if self.p_fake > self.high:
            return "fake"
        if self.p_fake < self.low:
            return "real"
        return "uncertain"


def verdict_for(p_fake: float, threshold: float) -> Verdict:
    """The verdict, with the queue's uncertain band moved to be centred on ``threshold``."""
    s = buckets.settings()
    low = max(0.0, threshold - (0.5 - s.uncertain_low))
    high = min(1.0, threshold + (s.uncertain_high - 0.5))
    return Verdict(p_fake, threshold, low, high)


def threshold_of(version) -> float:
    """The version's operating threshold (0.5 until versions carry one)."""
    return float(getattr(version, "threshold", None) or 0.5)


# ----------------------------------------------------------------------------- creating


def create(data: bytes, file_name: str, user_id: int | None) -> Check:
    """Store ``data`` through the importer and queue its scoring; CheckError when refused."""
    if not data:
        raise CheckError("the file is empty: send one image in the multipart field 'file'", 400)
    image_id = _import(data, file_name)
    check = Check(image_id=image_id, user_id=user_id, file_name=file_name[:500])
    db.session.add(check)
    db.session.commit()
    job = submit("check", {"check_id": check.id}, user_id=user_id)
    check.job_id = job.id
    db.session.commit()
    return check


def _import(data: bytes, file_name: str) -> int:
    """The image id of ``data`` once imported into ``checks`` (or already stored)."""
    name = safe_relative_path(file_name or "")
    folder = uploads_root() / f"check-{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    path = folder / (name.name if name else "image")
    if _is_archive(data):
        shutil.rmtree(folder, ignore_errors=True)
        raise CheckError(
            "an archive: a check takes one image file (import archives as a dataset)", 422
        )
    path.write_bytes(data)
    try:
        report = import_path(path, dataset=DATASET, evaluation_only=True, workers=1)
    except ImportRefused as error:
        raise CheckError(str(error), 409) from error
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if report.rejected:
        raise CheckError(f"not stored: {report.rejected[0]['reason']}", 422)
    sha256 = hashlib.sha256(data).hexdigest()
    image_id = db.session.scalar(select(Image.id).where(Image.sha256 == sha256))
    if image_id is None:  # skipped, not rejected: an archive, a document, something not an image
        raise CheckError(
            "not an image: a check takes one image file (an archive or another kind of file "
            "holds nothing to check; import archives as a dataset)",
            422,
        )
    return image_id


def wait(check: Check, timeout: float | None = None) -> Check:
    """Wait up to ``timeout`` (``CHECK_WAIT_SECONDS``) for the check's job; the fresh row."""
    timeout = current_app.config["CHECK_WAIT_SECONDS"] if timeout is None else timeout
    if check.job_id is not None and timeout > 0:
        with contextlib.suppress(TimeoutError):
            wait_for(check.job_id, timeout=timeout, poll=0.05)
    db.session.expire_all()
    return db.session.get(Check, check.id)


def state_of(check: Check) -> str:
    """ "done" once scored, "failed" when its job failed, else "pending"."""
    if check.result is not None:
        return "done"
    if check.error:
        return "failed"
    job = db.session.get(Job, check.job_id) if check.job_id is not None else None
    if job is not None and job.state in (JobState.FAILED, JobState.CANCELLED):
        return "failed"
    return "pending"


def send_to_review(check: Check) -> Check:
    """Put the check's image in the review queue (checks enter it only when sent)."""
    if check.sent_to_review_at is None:
        check.sent_to_review_at = utcnow()
        db.session.commit()
        materialise.invalidate()
    return check


# ----------------------------------------------------------------------------- the JSON


def to_json(check: Check) -> dict[str, Any]:
    """The check as the API, the CLI and the page give it (see the module docstring)."""
    result = check.result or {}
    stored = db.session.get(ImageEvidence, check.image_id)
    findings = dict(stored.findings) if stored is not None else {}
    hash_value = phash.from_signed(stored.phash) if stored and stored.phash is not None else None
    near = similar.find(hash_value, exclude=check.image_id)
    findings["similar"] = similar_finding(near, stored is not None)
    findings["model"] = model_finding(check, result)
    return {
        "id": check.id,
        "image_id": check.image_id,
        "sha256": check.image.sha256,
        "version": result.get("version"),
        "p_fake": result.get("p_fake"),
        "verdict": result.get("verdict", "uncertain"),
        "threshold": result.get("threshold"),
        "ood_score": result.get("ood_score"),
        "out_of_distribution": bool(result.get("out_of_distribution")),
        "evidence": findings,
        "similar": near,
        "url": url_for("check_api.get_check", check_id=check.id, _external=True),
        "state": state_of(check),
        "file_name": check.file_name,
        "sent_to_review": check.sent_to_review_at is not None,
    }


def similar_finding(near: list[dict[str, Any]], has_hash: bool) -> dict[str, Any]:
    """The near-duplicates evidence item."""
    from ..evidence import finding

    if not has_hash:
        return finding("not checked", "Not checked: the image has no perceptual hash.")
    if not near:
        return finding("none", "No stored image looks like this one. Means nothing either way.")
    decided = [item for item in near if item["decision"] in ("real", "fake")]
    closest = near[0]
    labelled = decided[0] if decided else closest
    said = labelled["decision"] or labelled["label"]
    known = said in ("real", "fake")
    verb = "reviewed" if decided else "labelled"
    summary = (
        f"{len(near)} stored near duplicate(s); the closest at distance {closest['distance']} "
        f"({closest['file_name']}, {closest['dataset']}), "
        + (f"{verb} {said.upper()}. " if known else "neither labelled nor reviewed yet. ")
        + "The same picture seen before is the strongest evidence there is."
    )
    weight = "strong" if known else "weak"
    return finding("found", summary, weight, says=said if known else None)


def model_finding(check: Check, result: dict[str, Any]) -> dict[str, Any]:
    """The model's evidence item: p_fake, the verdict at the threshold, the OOD warning."""
    from ..evidence import finding

    heatmap = url_for("review.heatmap", image_id=check.image_id)
    if result.get("error") or (check.result is None):
        reason = result.get("error") or check.error or "scoring has not finished"
        return finding("not checked", f"Not scored: {reason}.", heatmap=heatmap)
    if result.get("version") is None:
        return finding("not checked", "Not scored: no active model version.", heatmap=heatmap)
    summary = (
        f"{result['version']}: calibrated p(fake) = {result['p_fake']:.2f}, "
        f"{result['verdict'].upper()} at threshold {result['threshold']:.2f}."
    )
    if result.get("out_of_distribution"):
        summary += f" Warning: {OOD_WARNING}."
    # A confident call on a familiar image means something, but less than a signed manifest.
    doubtful = result.get("out_of_distribution") or result["verdict"] == "uncertain"
    weight = "weak" if doubtful else "moderate"
    says = result["verdict"] if result["verdict"] in ("real", "fake") else None
    return finding("found", summary, weight, says=says, heatmap=heatmap)


__all__ = ["DATASET", "OOD_WARNING", "TITLES", "CheckError", "create", "to_json", "wait"]


def _is_archive(data: bytes) -> bool:
    """A zip or tar file (which the importer would unpack instead of storing it as one image)."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        return True
    try:
        with tarfile.open(fileobj=io.BytesIO(data)):
            return True
    except (tarfile.TarError, EOFError, OSError, ValueError):
        return False
