"""Every JSON shape of /api/v1, once: pydantic models that check the request bodies, serialise
the responses and give /api/v1/openapi.json its schemas, so the document cannot drift from what
the code accepts and returns (a response field the model does not declare fails its request in
the tests, instead of going undocumented).

Request models are strict (no "1" for 1, no unknown fields); a body that does not fit is a 400
naming each field at fault.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import abort
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    create_model,
)

from ...inputs import MAX_ID, json_object
from ..reporting import exports, reports
from ..review import buckets, leases
from ..review.decisions import CHOICES
from ..training.train_request import INTEGER_FIELDS, PRESETS


def _whole(value: Any) -> Any:
    """JSON has one number type: 3.0 is the integer 3 (strict models still refuse "3")."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def whole(low: int, high: int) -> Any:
    """An integer from ``low`` to ``high`` (3.0 counts as 3)."""
    return Annotated[int, Field(ge=low, le=high), BeforeValidator(_whole)]


Id = whole(1, MAX_ID)
Moment = Annotated[str, Field(description="UTC, ISO 8601 with a Z")]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Split = Literal["train", "val", "test"]


class Shape(BaseModel):
    """A response shape: exactly these fields."""

    model_config = ConfigDict(extra="forbid")


class Request(BaseModel):
    """A request body: exactly these fields, of exactly these types."""

    model_config = ConfigDict(extra="forbid", strict=True)


def parse_body(model: type[Request]) -> Request:
    """The request's JSON body as ``model``; 400 naming every field that does not fit."""
    try:
        return model.model_validate(json_object())
    except ValidationError as error:
        problems = [
            f"{'.'.join(map(str, problem['loc'])) or 'body'}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        ]
        abort(400, description="; ".join(problems))


def dump(model: type[Shape], data: Any) -> Any:
    """``data`` serialised through ``model`` (a list of them when ``data`` is a list)."""
    if isinstance(data, list):
        return [model.model_validate(item).model_dump(mode="json") for item in data]
    return model.model_validate(data).model_dump(mode="json")


# ----------------------------------------------------------------------------- shapes


class Error(Shape):
    error: str
    message: str
    status: int


class Job(Shape):
    id: int
    kind: str
    state: JobState
    params: dict[str, Any] | None
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    log: str | None
    created_at: Moment
    started_at: Moment | None
    finished_at: Moment | None
    view: dict[str, Any] | None = None  # the job in words: title, size, stage, result links


class Version(Shape):
    name: str
    is_active: bool
    kind: str
    created_at: Moment | None
    activated_at: Moment | None
    architecture: str | None
    image_size: int | None
    init_weights: str | None
    temperature: float | None
    n_train: int | None
    labels_changed: int | None
    train_set_sha256: str | None
    metrics: dict[str, Any] | None
    history: list[dict[str, Any]] | None
    job_id: int | None
    threshold: float | None = None  # the FAKE threshold at the target false-positive rate
    preset: str | None = None
    epochs: int | None = None


class Activation(Shape):
    version: Version
    scoring_job: Job | None


class Image(Shape):
    id: int
    sha256: str
    file_name: str
    dataset: str
    split: str | None
    format: str
    width: int
    height: int
    import_label: str
    label: str
    created_at: Moment | None


class Prediction(Shape):
    image_id: int
    version: str
    p_fake: float
    p_fake_raw: float | None
    verdict: str
    oos_p_fake: float | None
    label_issue_score: float | None
    ood_score: float | None
    created_at: Moment | None


class Decision(Shape):
    id: int
    image_id: int
    reviewer: str
    choice: str = Field(description='"hidden" for another reviewer\'s vote still under review')
    note: str
    label_before: str | None
    version: str | None
    reverts_id: int | None
    at: Moment | None


class ImageDetail(Image):
    datasets: list[str]
    predictions: list[Prediction]
    decisions: list[Decision]


def _page(item: type[Shape], name: str) -> type[Shape]:
    """A page of ``item`` with the cursor of the next one."""
    fields = {
        "items": (list[item], ...),
        "next_after": (int | None, Field(description="pass as ?after= for the next page")),
    }
    return create_model(name, __base__=Shape, **fields)


ImagePage = _page(Image, "ImagePage")
PredictionPage = _page(Prediction, "PredictionPage")
DecisionPage = _page(Decision, "DecisionPage")
JobPage = _page(Job, "JobPage")


class QueueItem(Shape):
    image_id: int
    file_name: str
    dataset: str
    bucket: str
    label: str
    verdict: str
    p_fake: float
    label_issue_score: float | None
    ood_score: float | None
    split: str
    oos_p_fake: float | None
    leased: bool
    reason: str


class QueuePage(Shape):
    items: list[QueueItem]
    limit: int
    offset: int


class QueueCounts(Shape):
    counts: dict[str, int]
    titles: dict[str, str]
    total: int


class HistoryEntry(Shape):
    model_config = ConfigDict(extra="allow")  # the decision row's columns, as the screen shows
    id: int
    image_id: int
    user: str
    mine: bool
    choice: str
    note: str
    undone: bool
    created_at: Moment


class ReviewItem(Shape):
    image_id: int
    file_name: str
    dataset: str
    split: str | None
    label: str
    import_label: str
    label_source: str | None
    label_conflict: Any
    review_status: str
    reviews_per_item: int
    bucket: str | None
    bucket_title: str
    prediction: dict[str, Any] | None
    file: dict[str, Any]
    history: list[HistoryEntry]
    reason: str
    urls: dict[str, str]
    evidence: dict[str, Any] | None = None
    lease_expires_at: Moment | None = None


class LeftForMe(Shape):
    """Where the rest is when nothing is left for me (the desk's end screen)."""

    leased_to_others: int
    skipped: int


class Claimed(Shape):
    item: ReviewItem | None
    left: LeftForMe | None = None


class Released(Shape):
    released: int


class Counts(Shape):
    today: int
    all_time: int
    skipped: int


class Agreement(Shape):
    compared: int
    agreed: int
    rate: float | None


class ReviewerStats(Counts):
    agreement: Agreement


class DecisionOutcome(Shape):
    decision: dict[str, Any]
    image_id: int
    label: str
    review_status: str
    reverted: dict[str, Any] | None
    stats: Counts
    replayed: bool = False
    item: ReviewItem | None = None


class Vote(Shape):
    user: str
    choice: str
    note: str
    created_at: Moment


class Escalation(Shape):
    image_id: int
    file_name: str
    dataset: str
    import_label: str
    verdict: str | None
    p_fake: float | None
    votes: list[Vote]


class Escalations(Shape):
    items: list[Escalation]


# ----------------------------------------------------------------------------- requests


class QueueFilters(Request):
    """Filters of the queue; blank or null means any."""

    bucket: Literal[("", *buckets.BUCKET_TITLES)] | None = None
    dataset: str | None = None
    split: Literal["", "train", "val", "test"] | None = None
    verdict: Literal["", "real", "fake"] | None = None


class ClaimRequest(Request):
    filters: QueueFilters | None = None
    holding: list[Id] | None = Field(
        None, max_length=leases.MAX_HELD, description="ids my screen already holds"
    )
    image_id: Id | None = Field(None, description="ask for this image instead of the next one")
    skipped_again: bool = Field(False, description="serve items I skipped twice as well")


class ReleaseRequest(Request):
    image_ids: list[Id] | None = Field(None, description="all my leases when left out")


class DecisionRequest(Request):
    image_id: Id
    choice: Literal[CHOICES]
    note: Annotated[str, Field(max_length=2000)] | None = None
    model_version_id: Id | None = Field(None, description="the version whose verdict I saw")
    idempotency_key: (
        Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None
    ) = Field(None, description="the same key again returns the first decision, stored once")


def _bounded(name: str) -> Any:
    """An optional whole number within train_request's range for ``name``."""
    low, high = INTEGER_FIELDS[name]
    return whole(low, high) | None


class HeldOutCheck(Request):
    """K networks, each trained without one fold of the version's training images."""

    method: Literal["folds"]
    folds: _bounded("oof_folds") = Field(None, description="networks (folds); default 5")
    epochs: _bounded("oof_epochs") = Field(
        None, description="each network's; default the version's"
    )


class MarginsCheck(Request):
    """The training margins of networks trained on every labelled image."""

    method: Literal["margins"]
    networks: _bounded("oof_networks") = Field(
        None,
        description="networks whose margins are averaged, taking turns: the recipe, then with "
        "the medium stem, then the NPR residual input; default 1",
    )
    epochs: _bounded("oof_epochs") = Field(
        None, description="each network's; default the version's"
    )


class TrainRequest(Request):
    epochs: _bounded("epochs") = None
    image_size: _bounded("image_size") = None
    datasets: list[str] | None = Field(None, description="trainable dataset names; all if empty")
    seed: _bounded("seed") = None
    score: bool | None = Field(None, description="score every image afterwards")
    preset: Literal[PRESETS] | None = None
    head_only: bool | None = Field(None, description="refit the active version's head only")
    label_check: Annotated[HeldOutCheck | MarginsCheck, Field(discriminator="method")] | None = (
        Field(
            None,
            description="judge label mistakes with networks before scoring (the CLI's --oof-*); "
            "left out, scoring judges them with a light model on the new version's features",
        )
    )

    def job_params(self) -> dict[str, Any]:
        """The fields as the train job's parameters: ``label_check`` becomes the CLI's flat
        ``oof_method``, ``oof_folds``, ``oof_networks`` and ``oof_epochs``."""
        params = self.model_dump(exclude_none=True, exclude={"label_check"})
        check = self.label_check
        if check is not None:
            params["oof_method"] = check.method
            flat = {"folds": "oof_folds", "networks": "oof_networks", "epochs": "oof_epochs"}
            for field, name in flat.items():
                if getattr(check, field, None) is not None:
                    params[name] = getattr(check, field)
        return params


class MisclassifiedReport(Request):
    report: Literal["misclassified"] = "misclassified"
    format: Literal[reports.FORMATS]
    version: str | None = Field(None, description="default: the active version")
    dataset: str | None = None
    split: Split | None = None


class LabelsExport(Request):
    report: Literal["labels"]
    format: Literal[exports.LABEL_FORMATS]
    dataset: str | None = None
    split: Split | None = None


class ReportRequest(RootModel):
    """A misclassification report (the default) or a labels export."""

    model_config = ConfigDict(strict=True)
    root: MisclassifiedReport | LabelsExport
