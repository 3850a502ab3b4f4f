"""Heatmaps for the review screen: cached per (image, model version), computed by the job worker.

The web process never computes one (that would load PyTorch into every web worker, seconds and
about a GB each): a request for a heatmap not in the cache starts a ``heatmap`` job, or finds the
one already queued for the same image and version, and the page polls until the file exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from ...extensions import db
from ...jobs import submit
from ...models import Job, JobState, ModelVersion
from ..storage import servable_file

KIND = "heatmap"


@dataclass
class HeatmapStatus:
    """Where a heatmap stands: ``path`` once computed, else the job computing it (or failed)."""

    path: Path | None = None
    job: Job | None = None

    @property
    def failed(self) -> bool:
        """The last try ended without a heatmap (its job says why)."""
        return self.path is None and self.job is not None and self.job.is_finished


def heatmaps_root() -> Path:
    """The folder holding one heatmap folder per version."""
    return Path(current_app.instance_path) / "cache" / "heatmaps"


def cache_folder(version: ModelVersion) -> Path:
    """Where the version's heatmaps are kept (one PNG per image id)."""
    return heatmaps_root() / version.name


def cache_path(image_id: int, version: ModelVersion) -> Path:
    """The cached heatmap of one image under one version."""
    return cache_folder(version) / f"{int(image_id)}.png"


def cached(image_id: int, version: ModelVersion) -> Path | None:
    """The cached heatmap file, only when it really lies in the cache (no planted link)."""
    folder = cache_folder(version)
    return servable_file(cache_path(image_id, version), folder) if folder.exists() else None


def request_heatmap(
    image_id: int, version: ModelVersion, user_id: int | None, retry: bool = False
) -> HeatmapStatus:
    """The heatmap if cached; else the job for it: the one in flight, the last failed one (unless
    ``retry``), or a new one."""
    path = cached(image_id, version)
    if path is not None:
        return HeatmapStatus(path=path)
    latest = _latest_job(image_id, version.id)
    if latest is not None:
        gave_up = latest.state in (JobState.FAILED, JobState.CANCELLED) and not retry
        if gave_up or not latest.is_finished:
            return HeatmapStatus(job=latest)
    params = {"image_id": int(image_id), "model_version_id": version.id}
    return HeatmapStatus(job=submit(KIND, params, user_id=user_id))


def _latest_job(image_id: int, version_id: int) -> Job | None:
    """The newest heatmap job of this image and version among the recent ones."""
    recent = db.session.scalars(
        select(Job).where(Job.kind == KIND).order_by(Job.id.desc()).limit(200)
    )
    for job in recent:
        params = job.params or {}
        if params.get("image_id") == image_id and params.get("model_version_id") == version_id:
            return job
    return None
