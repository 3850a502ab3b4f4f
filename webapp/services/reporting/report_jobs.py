"""Reports and label exports built by a background job and kept under ``instance/reports/``.

The web pages and the API share these functions: check the request, start the job, find the
finished file for download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import abort, current_app, send_file
from sqlalchemy import select

from ...extensions import db
from ...jobs import handler, submit
from ...models import Job, JobState, User
from ..storage import servable_file
from . import exports, reports

REPORT_KINDS = {"misclassified": reports.FORMATS, "labels": exports.LABEL_FORMATS}
REQUEST_FIELDS = ("report", "format", "version", "dataset", "split")
EXTENSIONS = {"csv": "csv", "json": "json", "html": "html", "imagefolder": "zip"}


def reports_dir() -> Path:
    """Where finished report files live."""
    path = Path(current_app.instance_path) / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def clean_params(raw: dict[str, Any]) -> dict[str, Any]:
    """Validated job parameters; ValueError saying what is wrong (names are looked up here,
    so a typo fails at once, not minutes later in the worker)."""
    report = _text(raw, "report") or "misclassified"
    if report not in REPORT_KINDS:
        raise ValueError(f"unknown report {report!r} (use {', '.join(REPORT_KINDS)})")
    fmt = _text(raw, "format")
    if fmt not in REPORT_KINDS[report]:
        raise ValueError(f"format must be one of {', '.join(REPORT_KINDS[report])} for {report}")
    params = {
        "report": report,
        "format": fmt,
        "dataset": _text(raw, "dataset") or None,
        "split": _text(raw, "split") or None,
    }
    if report == "misclassified":
        scope = reports.resolve_scope(
            _text(raw, "version") or None, params["dataset"], params["split"]
        )
        params["version"] = scope.version.name  # pin the version active now
    else:
        exports.find_dataset(params["dataset"])
        reports.check_split(params["split"])
    return params


def _text(raw: dict[str, Any], name: str) -> str:
    """A text field of the request, stripped ("" when absent); ValueError for another type."""
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value.strip()


def start_report(raw: dict[str, Any], user: User | None) -> Job:
    """Check the parameters and queue the job that writes the file."""
    return submit("report", clean_params(raw), user_id=user.id if user else None)


def file_name(job_id: int, params: dict[str, Any]) -> str:
    """``job-12-misclassified-v3-cifake-test.html`` and the like."""
    parts = [f"job-{job_id}", params["report"]]
    parts += [params[key] for key in ("version", "dataset", "split") if params.get(key)]
    safe = "-".join(parts).replace("/", "_").replace(" ", "_")
    return f"{safe}.{EXTENSIONS[params['format']]}"


def report_file(job: Job) -> Path | None:
    """The finished file of a report job, or None while there is none to download."""
    if job.kind != "report" or job.state != JobState.SUCCEEDED or not job.result:
        return None
    folder = reports_dir()
    return servable_file(folder / str(job.result.get("file", "")), folder)


def visible_report_jobs(user: User, limit: int = 50) -> list[Job]:
    """The report jobs ``user`` may see, the newest first: their own, or every one for an
    admin."""
    query = select(Job).where(Job.kind == "report").order_by(Job.id.desc()).limit(limit)
    if not user.is_admin:
        query = query.where(Job.user_id == user.id)
    return list(db.session.scalars(query))


def may_see(job: Job, user: User) -> bool:
    """Report jobs are visible to whoever started them, and to admins."""
    return job.kind == "report" and (user.is_admin or job.user_id == user.id)


def send_report(job: Job):
    """The finished file as a download; 409 while the job has not (or not successfully) ended."""
    path = report_file(job)
    if path is None:
        abort(409, description=f"report job {job.id} is {job.state}: no file to download")
    return send_file(path, as_attachment=True, download_name=path.name, max_age=0)


def show_report(job: Job):
    """A finished HTML report inline, for reading in the browser; 404 for other formats. The
    page is sandboxed (no script, no forms), since it carries names that came with uploads."""
    path = report_file(job)
    if path is None or path.suffix != ".html":
        abort(404, description=f"report job {job.id} has no HTML report to show")
    response = send_file(path, mimetype="text/html", max_age=0)
    response.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    )
    return response


def _reader(job_id: int) -> User | None:
    """The user who asked for the report (None for a command-line run: everything shows)."""
    job = db.session.get(Job, job_id)
    return db.session.get(User, job.user_id) if job is not None and job.user_id else None


@handler("report")
def report_job(context) -> dict[str, Any]:
    """Write a misclassification report or a labels export to ``instance/reports/``."""
    params = context.params
    path = reports_dir() / file_name(context.job_id, params)

    def progress(done: int, total: int) -> None:
        context.check_cancelled()
        context.progress(done=done, total=total, fraction=done / max(total, 1))

    reader = _reader(context.job_id)
    context.log(f"writing {path.name}")
    dataset, split = params.get("dataset"), params.get("split")
    if params["report"] == "misclassified":
        summary = reports.write_misclassified(
            path, params["format"], params.get("version"), dataset, split, progress, reader
        )
    elif params["format"] == "csv":
        summary = exports.write_labels_csv(path, dataset, split, progress)
    else:
        summary = exports.write_imagefolder_zip(path, dataset, split, progress)
    context.progress(fraction=1.0)
    return {**summary, "file": path.name, "bytes": path.stat().st_size}
