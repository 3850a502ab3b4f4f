"""Jobs as a person would describe them: what the job is, how far it got, what came of it.

The Job row holds raw fields (params, merged progress reports, a result dict, an error that may be
a traceback). :func:`describe` turns them into a title, a state line, a progress fraction (1 once
succeeded, whatever the last report said), the job's size, the result as sentences and the links
that follow from it (the new version, compare, activate, the report). Pages and their polling
JSON both use it, so the list and the job page always say the same thing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from flask import url_for
from sqlalchemy import select

from ...extensions import db
from ...models import Job, JobState, ModelVersion

KIND_TITLES = {
    "import": "Import",
    "train": "Training",
    "predict": "Scoring",
    "report": "Report",
    "sleep": "Demo job",
    "fail": "Demo job",
}


@dataclass
class JobView:
    """A job in words, for templates and JSON."""

    id: int
    kind: str
    state: str
    title: str
    size: str
    fraction: float | None
    status: str
    sentences: list[str] = field(default_factory=list)
    links: list[dict[str, str]] = field(default_factory=list)
    error: str = ""
    error_detail: str = ""
    finished: bool = False

    def as_json(self) -> dict[str, Any]:
        """Plain JSON for the page's polling."""
        return asdict(self)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _title(job: Job) -> str:
    params = job.params or {}
    if job.kind == "train":
        if params.get("head_only"):
            return f"Head-only refit of {params.get('base_version') or _parent_of(job)}"
        return _training_title(job)
    if job.kind == "predict":
        return f"Scoring every image with {params.get('version', 'a version')}"
    if job.kind == "import":
        source = params.get("source_name") or str(params.get("path", "")).rsplit("/", 1)[-1]
        return f"Import of {source} into {params.get('dataset') or 'a new dataset'}"
    if job.kind == "report":
        return f"{str(params.get('report', '')).capitalize()} report ({params.get('format', '')})"
    if job.kind == "oof":
        version = params.get("version", "a version")
        if params.get("method") == "margins":
            networks = int(params.get("networks") or 1)
            of = f" ({networks} networks)" if networks > 1 else ""
            return f"Training margins{of} of every labelled image, for {version}'s label mistakes"
        return f"{params.get('folds') or 5} held-out networks for {version}'s label mistakes"
    return KIND_TITLES.get(job.kind, job.kind)


def _training_title(job: Job) -> str:
    """Whether a training fine-tunes ImageNet weights or starts from random ones is known once it
    has run (the weights may be fetched meanwhile): until then it is "a new version"."""
    version = _made_by(job)
    if version is None:
        return "Training a new version"
    if version.init_weights == "imagenet":
        return f"Fine-tuning {version.name} from ImageNet weights"
    return f"Training {version.name} from {version.init_weights} weights"


def _made_by(job: Job) -> ModelVersion | None:
    made = (job.result or {}).get("version")
    if not made:
        return None
    return db.session.scalar(select(ModelVersion).where(ModelVersion.name == made))


def _parent_of(job: Job) -> str:
    """The version a finished head refit started from, else "the active version"."""
    version = _made_by(job)
    return version.parent.name if version is not None and version.parent else "the active version"


def _size(job: Job) -> str:
    params, progress = job.params or {}, job.progress or {}
    if job.kind == "train":
        if params.get("head_only"):
            return "classifier head only, on cached features"
        parts = []
        if params.get("epochs") or progress.get("epochs"):
            epochs = params.get("epochs") or progress.get("epochs")
            parts.append(f"{epochs} epoch{'' if str(epochs) == '1' else 's'}")
        if params.get("image_size"):
            parts.append(f"{params['image_size']} px")
        if params.get("datasets"):
            parts.append("datasets " + ", ".join(params["datasets"]))
        return " · ".join(parts) or "the configured defaults"
    if job.kind == "oof":  # its progress counts folds or epochs, not images
        images = (job.result if isinstance(job.result, dict) else {}).get("images")
        which = "labelled" if params.get("method") == "margins" else "training"
        return f"{int(images):,} {which} images" if images else ""
    if progress.get("total"):
        unit = "files" if job.kind == "import" else "images"
        return f"{progress['total']:,} {unit}"
    result = job.result if isinstance(job.result, dict) else {}
    if job.kind == "predict" and "scored" in result:  # a scoring that reported no total
        return f"{int(result['scored']) + int(result.get('already_scored') or 0):,} images"
    return ""


def _fraction(job: Job) -> float | None:
    if job.state == JobState.SUCCEEDED:
        return 1.0
    fraction = (job.progress or {}).get("fraction")
    return float(fraction) if fraction is not None else None


def _running_status(job: Job) -> str:
    progress = job.progress or {}
    parts = [str(progress.get("stage") or progress.get("phase") or "working")]
    if progress.get("epoch") is not None and progress.get("epochs"):
        parts.append(f"epoch {progress['epoch']} of {progress['epochs']}")
    if progress.get("batch") is not None and progress.get("batches"):
        parts.append(f"batch {progress['batch']} of {progress['batches']}")
    if progress.get("done") is not None and progress.get("total"):
        parts.append(f"{progress['done']:,} of {progress['total']:,} done")
    if progress.get("images_per_s"):
        parts.append(f"{progress['images_per_s']:.0f} images/s")
    if progress.get("eta_s") is not None:
        parts.append(f"about {_duration(progress['eta_s'])} left")
    return " · ".join(parts)


def _status(job: Job) -> str:
    elapsed = None
    if job.started_at and job.finished_at:
        elapsed = (job.finished_at - job.started_at).total_seconds()
    if job.state == JobState.QUEUED:
        return "Waiting for a worker"
    if job.state == JobState.RUNNING:
        return _running_status(job)
    if job.state == JobState.SUCCEEDED:
        return f"Succeeded in {_duration(elapsed)}" if elapsed is not None else "Succeeded"
    if job.state == JobState.CANCELLED:
        return "Cancelled"
    return "Failed"


def _error(job: Job) -> tuple[str, str]:
    """(the message, the traceback behind it or "")."""
    text = (job.error or "").strip()
    if not text:
        return "", ""
    if text.startswith("Traceback"):
        last = text.splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
        return message, text
    return text, ""


def _percent(value: float | None) -> str:
    return f"{value * 100:.1f}%" if value is not None else "not measured"


def _training_result(job: Job, result: dict) -> tuple[list[str], list[dict[str, str]]]:
    name = result.get("version")
    version = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name))
    if version is None:
        return [f"It registered version {name}, which no longer exists."], []
    test = (version.metrics or {}).get("test") or {}
    sentences = [
        f"It registered version {name}"
        + (f", fitted on {version.n_train:,} training images." if version.n_train else "."),
        "On the test split"
        + (f" ({test['n']:,} images)" if test.get("n") else "")
        + f" it is right {_percent(test.get('accuracy'))} of the time"
        + (f" (ROC AUC {test['roc_auc']:.3f})." if test.get("roc_auc") is not None else "."),
    ]
    if version.is_active:
        sentences.append(f"{name} is the active version.")
    else:
        sentences.append(f"{name} is not active: the queue still uses the active version.")
    links = [
        {"label": f"Version {name}", "url": url_for("admin.versions_page") + f"#version-{name}"},
        {"label": "Compare versions", "url": url_for("admin.versions_page") + "#compare-test"},
    ]
    if not version.is_active:
        links.append(
            {
                "label": f"Activate {name}…",
                "url": url_for("admin.confirm_activate", name=name),
            }
        )
    return sentences, links


def _label_job_sentence(result: dict) -> str:
    """What a finished label-mistake job judged, and with what."""
    if result.get("method") == "margins":
        networks = int(result.get("networks") or 1)
        how = (
            "the training margins of one network"
            if networks == 1
            else f"the training margins of {networks} networks, averaged"
        )
    else:
        how = f"{result.get('folds') or 5} held-out networks"
    words = f"Judged the labels of {int(result.get('images') or 0):,} images with {how}"
    if result.get("agreement") is not None:
        words += f", which side with {result['agreement']:.1%} of them"
    return words + "; the scoring it queued ranks suspected label mistakes by them."


def _result(job: Job) -> tuple[list[str], list[dict[str, str]]]:
    result = job.result or {}
    if job.state != JobState.SUCCEEDED:
        return [], []
    if job.kind == "train" and result.get("version"):
        return _training_result(job, result)
    if job.kind == "predict":
        scored = result.get("scored", result.get("inserted"))
        words = (
            f"{result.get('version', 'The version')} scored {scored:,} images."
            if scored is not None
            else f"{result.get('version', 'The version')} scored the images."
        )
        return [words], [{"label": "Versions", "url": url_for("admin.versions_page")}]
    if job.kind == "oof":
        return [_label_job_sentence(result)], [
            {"label": "Versions", "url": url_for("admin.versions_page")}
        ]
    if job.kind == "import":
        sentences = [
            f"{result.get('imported', 0)} imported, {result.get('duplicates', 0)} duplicates, "
            f"{len(result.get('rejected') or [])} rejected, {result.get('skipped', 0)} skipped "
            f"into {result.get('dataset')}."
        ]
        links = []
        if result.get("import_id"):
            links.append(
                {
                    "label": "Every file of this import",
                    "url": url_for("datasets.import_page", run_id=result["import_id"]),
                }
            )
        return sentences, links
    if job.kind == "report":
        sentences = [
            f"The file {result.get('file', '')} is ready ({result.get('bytes', 0):,} bytes)."
        ]
        links = [{"label": "Download", "url": url_for("reports.download", job_id=job.id)}]
        if (job.params or {}).get("format") == "html":
            links.insert(
                0, {"label": "Open the report", "url": url_for("reports.view", job_id=job.id)}
            )
        return sentences, links
    return ["It finished."], []


def describe(job: Job) -> JobView:
    """The job in words (see the module docstring)."""
    sentences, links = _result(job)
    error, detail = _error(job)
    return JobView(
        id=job.id,
        kind=job.kind,
        state=job.state,
        title=_title(job),
        size=_size(job),
        fraction=_fraction(job),
        status=_status(job),
        sentences=sentences,
        links=links,
        error=error,
        error_detail=detail,
        finished=job.is_finished,
    )


def job_to_dict(job: Job) -> dict:
    """The JSON form of a job, shared by the admin pages, the reports pages and the API."""
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "params": job.params,
        "progress": job.progress or {},
        "result": job.result,
        "error": job.error,
        "log": job.log,
        "created_at": job.created_at.isoformat() + "Z",
        "started_at": job.started_at.isoformat() + "Z" if job.started_at else None,
        "finished_at": job.finished_at.isoformat() + "Z" if job.finished_at else None,
        "view": describe(job).as_json(),
    }


def recent_jobs(limit: int) -> list[Job]:
    """The latest ``limit`` jobs, newest first."""
    return list(db.session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)))


def training_in_flight() -> Job | None:
    """A training job waiting or running, if there is one (training is a singleton job)."""
    return db.session.scalar(
        select(Job).where(Job.kind == "train", Job.state.in_(["queued", "running"]))
    )
