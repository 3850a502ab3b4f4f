"""A training request checked before it is queued: every field typed and in range, every dataset
named one that exists and may be trained on, so a mistake fails at once with its reason instead
of minutes later in the worker (or never, as a negative epoch count would).

Only one training runs at a time. Asking again with the same parameters returns the job already
queued; asking with other parameters is refused (409) rather than silently dropping them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ...extensions import db
from ...jobs import submit
from ...models import Dataset, Job
from ..records.lookup import StateConflict, UnknownName
from ..records.versions import TRAIN_PRESETS as PRESETS

INTEGER_FIELDS = {
    "epochs": (1, 1000),
    "image_size": (16, 1024),
    "seed": (0, 2**32 - 1),
    "nproc": (1, 64),
    "oof_folds": (2, 20),
    "oof_epochs": (1, 1000),
    "oof_networks": (1, 8),
}
BOOLEAN_FIELDS = ("score", "head_only")
OOF_METHODS = ("folds", "margins")
"""How label mistakes are judged before scoring (the CLI's ``--oof-method``): ``folds``, K
held-out networks over the version's training images (``oof_folds``, default 5), or
``margins``, the training margins of ``oof_networks`` networks (default 1) over every labelled
image. Without either, scoring judges them with a light model on the version's own features."""
FIELDS = (*INTEGER_FIELDS, *BOOLEAN_FIELDS, "datasets", "preset", "oof_method")


class TrainRequestError(ValueError):
    """A training request that cannot be queued; ``status`` is the HTTP status that fits."""

    status = 400


class UnknownDatasets(TrainRequestError, UnknownName):
    """Datasets named that do not exist."""

    status = 404


class HeldOutDatasets(TrainRequestError, StateConflict):
    """Evaluation-only datasets asked to train on."""

    status = 409


class TrainingBusy(TrainRequestError):
    """Another training with other parameters is queued or running."""

    status = 409


def clean_train_params(raw: dict[str, Any], allowed: tuple[str, ...] = FIELDS) -> dict[str, Any]:
    """The request's fields, checked; absent or null fields are left out (the defaults apply).

    Every problem is named at once, so one correction fixes the request.
    """
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise TrainRequestError(f"unknown field(s) {', '.join(unknown)}; use {', '.join(allowed)}")
    params: dict[str, Any] = {}
    problems: list[TrainRequestError] = []
    for name in allowed:
        if raw.get(name) is None:
            continue
        try:
            params[name] = _clean(name, raw[name])
        except TrainRequestError as error:
            problems.append(error)
    problems += [TrainRequestError(problem) for problem in label_check_problems(params)]
    if len(problems) == 1:
        raise problems[0]  # keeps its status: 404 for a dataset that does not exist
    if problems:
        raise TrainRequestError("; ".join(map(str, problems)))
    return with_default_folds(params)


def label_check_problems(params: dict[str, Any], name=lambda field: field) -> list[str]:
    """The label-mistake fields of ``params`` that do not go together; the CLI shares these
    rules, naming each field by its flag (``name``)."""
    method = params.get("oof_method")
    has = {field for field in ("oof_folds", "oof_epochs", "oof_networks") if params.get(field)}
    folds, networks, epochs, by = (
        name(f) for f in ("oof_folds", "oof_networks", "oof_epochs", "oof_method")
    )
    problems = []
    if method == "margins" and "oof_folds" in has:
        problems.append(f"{folds} applies to {by} folds")
    if "oof_networks" in has and method != "margins":
        problems.append(f"{networks} applies to {by} margins")
    if "oof_epochs" in has and method is None and "oof_folds" not in has:
        problems.append(f"{epochs} applies with {by} or {folds}")
    return problems


def with_default_folds(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with 5 folds where they ask for held-out networks without a count."""
    if params.get("oof_method") == "folds" and not params.get("oof_folds"):
        return {**params, "oof_folds": 5}
    return params


def _clean(name: str, value: Any) -> Any:
    if name in INTEGER_FIELDS:
        low, high = INTEGER_FIELDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise TrainRequestError(f"{name} must be a whole number from {low} to {high}")
        return value
    if name in BOOLEAN_FIELDS:
        if not isinstance(value, bool):
            raise TrainRequestError(f"{name} must be true or false")
        return value
    if name == "oof_method":
        if value not in OOF_METHODS:
            raise TrainRequestError(f"oof_method must be one of {', '.join(OOF_METHODS)}")
        return value
    if name == "preset":
        if value not in PRESETS:
            raise TrainRequestError(f"preset must be one of {', '.join(PRESETS)}")
        return value
    return _datasets(value)


def _datasets(value: Any) -> list[str]:
    """Names of existing datasets that are not evaluation-only (an empty list means all)."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise TrainRequestError("datasets must be a list of dataset names")
    names = sorted({name.strip() for name in value if name.strip()})
    # no dataset name holds a NUL (PostgreSQL's text cannot), so such a name is simply missing
    found = db.session.scalars(
        select(Dataset).where(Dataset.name.in_([name for name in names if "\x00" not in name]))
    )
    rows = {row.name: row for row in found}
    missing = [name for name in names if name not in rows]
    if missing:
        raise UnknownDatasets(f"no dataset {', '.join(map(repr, missing))}")
    held_out = [name for name in names if rows[name].evaluation_only]
    if held_out:
        listed = ", ".join(held_out)
        raise HeldOutDatasets(f"evaluation-only datasets are never trained on: {listed}")
    return names


def start_training(params: dict[str, Any], user_id: int | None) -> Job:
    """Queue a training with checked ``params``, or return the one queued with the same ones."""
    job = submit("train", params, user_id=user_id)
    if job.params != params:
        raise TrainingBusy(
            f"training job {job.id} is {job.state} with other parameters ({job.params}); "
            "wait for it or cancel it first"
        )
    return job
