"""Activating a version (promote or roll back): the audit record of how verdicts moved, and
scoring started when the version has not scored yet. Shared by the admin pages, the API and
``flask model activate``."""

from __future__ import annotations

from sqlalchemy import func, select

from ...extensions import db
from ...jobs import submit
from ...models import Job, ModelVersion, Prediction, User
from ..records import audit_trail, versions
from .comparison import verdict_shift


def activate_with_scoring(
    version: ModelVersion, user_id: int | None, actor_name: str = ""
) -> Job | None:
    """Activate (promote or roll back), recorded in the audit trail with how the verdicts
    moved, by the user ``user_id`` or else the named actor (``cli``); start scoring when the
    version has not scored yet."""
    before = versions.active_version()
    shift = verdict_shift(version, before)
    versions.activate(version)
    audit_trail.record(
        "activation",
        version.name,
        f"{version.name} activated instead of {before.name if before else 'none'}: "
        f"{shift['real_to_fake']} verdicts real to fake, {shift['fake_to_real']} fake to real",
        user=db.session.get(User, user_id) if user_id else actor_name or None,
    )
    db.session.commit()
    scored = db.session.scalar(
        select(func.count(Prediction.id)).where(Prediction.model_version_id == version.id)
    )
    if scored:
        return None
    return submit("predict", {"version": version.name}, user_id=user_id)
