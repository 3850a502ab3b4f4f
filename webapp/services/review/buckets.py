"""The review queue's rules: which bucket an image falls in, in what order, and why.

From the active model version's stored scores, each image falls in the first of these buckets (order
and thresholds from the configuration) that it meets:

- ``requested``: an admin sent it to review from the image browser (``review_requests``);
- ``label_issue``: labelled, and the out-of-sample label-issue score reaches the threshold;
- ``evidence``: strong evidence about the image (``image_evidence.claims``: valid content
  credentials, generator traces, a watermark, camera metadata with a near duplicate reviewed
  REAL) contradicts its label or the verdict;
- ``misclassified``: labelled, and the verdict disagrees with the label;
- ``uncertain``: calibrated p(fake) inside the uncertain band;
- ``ood``: out-of-distribution score at or above the threshold;
- ``audit``: a random share (``audit_key`` below the rate) of the confident verdicts of both
  classes: verdicts (made at the version's FAKE threshold) whose p(fake) lies outside the
  uncertain band on the verdict's side.

Unlabelled images can only meet ``requested``, the evidence bucket and the last three. Images
that arrived through a check (the ``checks`` dataset) enter the queue only once someone sent them
to review. Within a bucket the most informative item comes first (see ``SORT_KEYS``), ties broken
by image id, so the CLI, the API and the review screen all give the same order. Images decided
enough times (see :mod:`webapp.services.records.labels`) leave the queue.

Also here: the settings and filters every queue request reads, the item shape, and the errors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    and_,
    func,
    or_,
    select,
)

from ...extensions import db
from ...models import (
    Dataset,
    Image,
    ImageEvidence,
    Label,
    Prediction,
    ReviewRequest,
    Split,
)
from ..records.lookup import UnknownName

BUCKET_TITLES = {
    "requested": "Sent to review by an admin",
    "label_issue": "Suspected label mistake",
    "evidence": "Evidence disagrees",
    "misclassified": "Misclassified",
    "uncertain": "Uncertain",
    "ood": "Out of distribution",
    "audit": "Audit sample",
}
CHECKS_DATASET = "checks"  # where checked images are stored (webapp.services.checking)


class QueueError(ValueError):
    """A bad queue request (unknown bucket, dataset, split...): the message says what to fix."""


@dataclass(frozen=True)
class QueueSettings:
    """The configuration the queue is built from."""

    buckets: tuple[str, ...]
    uncertain_low: float
    uncertain_high: float
    label_issue_threshold: float
    ood_threshold: float
    audit_rate: float
    reviews_per_item: int
    lease_seconds: int

    @classmethod
    def from_config(cls, config: Any = None) -> QueueSettings:
        """Read and check the settings from ``config`` (default: the current app's)."""
        config = config if config is not None else current_app.config
        buckets = tuple(name.strip() for name in config["QUEUE_BUCKETS"] if name.strip())
        unknown = [name for name in buckets if name not in BUCKET_TITLES]
        if unknown or len(set(buckets)) != len(buckets) or not buckets:
            raise QueueError(
                f"QUEUE_BUCKETS must name each of {', '.join(BUCKET_TITLES)} at most once; "
                f"got {', '.join(buckets) or 'nothing'}"
            )
        settings = cls(
            buckets=buckets,
            uncertain_low=float(config["UNCERTAIN_LOW"]),
            uncertain_high=float(config["UNCERTAIN_HIGH"]),
            label_issue_threshold=float(config["LABEL_ISSUE_THRESHOLD"]),
            ood_threshold=float(config["OOD_THRESHOLD"]),
            audit_rate=float(config["AUDIT_RATE"]),
            reviews_per_item=max(1, int(config["REVIEWS_PER_ITEM"])),
            lease_seconds=max(1, int(config["LEASE_SECONDS"])),
        )
        if not 0.0 <= settings.uncertain_low <= 0.5 <= settings.uncertain_high <= 1.0:
            raise QueueError("the uncertain band must satisfy 0 <= LOW <= 0.5 <= HIGH <= 1")
        return settings

    def signature(self) -> str:
        """Everything that shapes the queue entries (not the lease length)."""
        values = asdict(self)
        values.pop("lease_seconds")
        return json.dumps(values, sort_keys=True)


@dataclass(frozen=True)
class QueueFilter:
    """Optional restrictions of the queue; None means any."""

    dataset: str | None = None
    split: str | None = None
    bucket: str | None = None
    verdict: str | None = None

    def check(self, settings: QueueSettings) -> int | None:
        """Raise :class:`QueueError` on a bad value; return the dataset's id when one is named."""
        if self.bucket is not None and self.bucket not in settings.buckets:
            raise QueueError(
                f"unknown bucket {self.bucket!r}: one of {', '.join(settings.buckets)}"
            )
        if self.split is not None and self.split not in set(Split):
            raise QueueError(f"unknown split {self.split!r}: one of train, val, test")
        if self.verdict is not None and self.verdict not in (Label.REAL, Label.FAKE):
            raise QueueError(f"unknown verdict {self.verdict!r}: real or fake")
        if self.dataset is None:
            return None
        dataset_id = db.session.scalar(select(Dataset.id).where(Dataset.name == self.dataset))
        if dataset_id is None:
            raise UnknownDataset(f"unknown dataset {self.dataset!r}")
        return dataset_id


@dataclass
class QueueItem:
    """One queue entry as scripts and the screen see it."""

    image_id: int
    file_name: str
    dataset: str
    bucket: str
    label: str
    verdict: str
    p_fake: float
    label_issue_score: float | None
    ood_score: float | None
    split: str = ""
    oos_p_fake: float | None = None
    leased: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``image_id``, ``file_name``, ``dataset``, ``bucket``, ``label``, ...)."""
        return asdict(self)


def settings() -> QueueSettings:
    """The current app's queue settings."""
    return QueueSettings.from_config()


def _labelled() -> ColumnElement[bool]:
    return Image.label.in_((Label.REAL, Label.FAKE))


def bucket_conditions(s: QueueSettings) -> dict[str, ColumnElement[bool]]:
    """SQL membership test of each bucket (without the precedence of earlier buckets)."""
    return {
        "requested": Prediction.image_id.in_(select(ReviewRequest.image_id)),
        "label_issue": and_(
            _labelled(),
            Prediction.label_issue_score.is_not(None),
            Prediction.label_issue_score >= s.label_issue_threshold,
        ),
        "evidence": and_(
            ImageEvidence.claims.is_not(None),
            or_(
                and_(_labelled(), ImageEvidence.claims != Image.label),
                ImageEvidence.claims != Prediction.verdict,
            ),
        ),
        "misclassified": and_(_labelled(), Prediction.verdict != Image.label),
        "uncertain": and_(
            Prediction.p_fake >= s.uncertain_low, Prediction.p_fake <= s.uncertain_high
        ),
        "ood": and_(Prediction.ood_score.is_not(None), Prediction.ood_score >= s.ood_threshold),
        # Confident: outside the uncertain band, on the side of the version's threshold that
        # its verdict says (a REAL call between the band and a high threshold is not confident).
        "audit": and_(
            Prediction.audit_key < s.audit_rate,
            or_(
                and_(Prediction.verdict == Label.REAL, Prediction.p_fake < s.uncertain_low),
                and_(Prediction.verdict == Label.FAKE, Prediction.p_fake > s.uncertain_high),
            ),
        ),
    }


# Ascending sort key per bucket: the most informative item first.
SORT_KEYS = {
    "requested": lambda: func.abs(Prediction.p_fake - 0.5),  # the closest call first
    "label_issue": lambda: -Prediction.label_issue_score,  # the strongest suspicion
    "evidence": lambda: -func.abs(Prediction.p_fake - 0.5),  # the most confident contradiction
    "misclassified": lambda: -func.abs(Prediction.p_fake - 0.5),  # the most confident mistake
    "uncertain": lambda: func.abs(Prediction.p_fake - 0.5),  # the closest to a coin toss
    "ood": lambda: -Prediction.ood_score,  # the least like the training data
    "audit": lambda: Prediction.audit_key,  # random, both classes
}


def reason(item: QueueItem | dict[str, Any], s: QueueSettings | None = None) -> str:
    """Why an item is in the queue, in words a reviewer can check against the numbers."""
    get = item.get if isinstance(item, dict) else lambda key: getattr(item, key)
    s = s or settings()
    bucket, label, verdict, p_fake = get("bucket"), get("label"), get("verdict"), get("p_fake")
    confidence = max(p_fake, 1 - p_fake)
    if bucket == "requested":
        return "An admin sent this image to review from the image browser."
    if bucket == "label_issue":
        oos = get("oos_p_fake")
        oos_text = f"out of sample the model gives p(fake) = {oos:.2f}" if oos is not None else ""
        return (
            f"Labelled {label.upper()}, but {oos_text or 'the model disagrees'}: "
            f"label-issue score {get('label_issue_score'):.2f} ≥ {s.label_issue_threshold:.2f}."
        )
    if bucket == "evidence":
        return (
            "Strong evidence (content credentials, generator traces, a watermark, or camera "
            f"metadata and a near duplicate reviewed REAL) contradicts the label {label.upper()} "
            f"or the model's {verdict.upper()}."
        )
    if bucket == "misclassified":
        return (
            f"The model says {verdict.upper()} with {confidence:.0%} confidence; "
            f"the label says {label.upper()}."
        )
    if bucket == "uncertain":
        return (
            f"Calibrated p(fake) = {p_fake:.2f}, inside the uncertain band "
            f"{s.uncertain_low:.2f}–{s.uncertain_high:.2f}."
        )
    if bucket == "ood":
        return (
            f"Out-of-distribution score {get('ood_score'):.2f} ≥ {s.ood_threshold:.2f}: "
            "unlike the images the model was trained on."
        )
    if bucket == "audit":
        return (
            f"Random audit of confident calls ({s.audit_rate:.0%} sample): the model says "
            f"{verdict.upper()} with {confidence:.0%} confidence."
        )
    return "Opened directly: not in the queue."


class UnknownDataset(QueueError, UnknownName):
    """A filter names a dataset that does not exist."""


class UnknownImage(QueueError, UnknownName):
    """A claim names an image that does not exist."""


class ItemHeld(QueueError):
    """Another reviewer holds the lease on this image."""

    def __init__(self, image_id: int) -> None:
        super().__init__(f"image {image_id} is being reviewed by someone else right now")
        self.image_id = image_id
