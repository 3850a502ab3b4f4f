"""Web uploads: save what the browser sent into the instance folder and queue the import job.

An upload is one archive (.zip, .tar, .tar.gz), or images, or a whole folder (the browser sends
each file's path inside it, so a ``REAL/`` / ``FAKE/`` layout survives). Every path component is
sanitised; nothing is written outside the upload's own folder.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from ...jobs import submit
from ...models import Job, utcnow
from ..storage import instance_root
from .sources import ARCHIVE_SUFFIXES, default_dataset_name


class UploadError(ValueError):
    """The upload cannot be imported (nothing sent, a bad name); the message says why."""


@dataclass
class Upload:
    """Where an upload was saved and what to import from it."""

    folder: Path
    import_path: Path
    default_name: str
    # What the records call it: the uploaded file's name, never the server path.
    source_name: str = ""


def uploads_root() -> Path:
    """Where web uploads wait for their import job."""
    return instance_root() / "uploads"


def safe_relative_path(name: str) -> Path | None:
    """A client-supplied path made safe: each component sanitised, ``..`` and empties
    dropped; None when nothing usable is left."""
    parts = [secure_filename(part) for part in name.replace("\\", "/").split("/")]
    parts = [part for part in parts if part and part not in (".", "..")]
    return Path(*parts) if parts else None


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def save_upload(files: list[FileStorage]) -> Upload:
    """Save the uploaded files under ``uploads/<random>/`` and say what to import."""
    files = [f for f in files if f and f.filename]
    if not files:
        raise UploadError("choose an archive, some images or a folder to upload")
    folder = uploads_root() / f"{utcnow():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"
    if len(files) == 1 and _is_archive(files[0].filename):
        name = safe_relative_path(files[0].filename)
        if name is None:
            raise UploadError(f"unusable file name {files[0].filename!r}")
        target = folder / name.name
        folder.mkdir(parents=True)
        files[0].save(target)
        return Upload(folder, target, default_dataset_name(target), name.name)
    images = folder / "files"
    used: set[Path] = set()
    for index, storage in enumerate(files):
        relative = safe_relative_path(storage.filename) or Path(f"file-{index}")
        if relative in used:
            relative = relative.with_name(f"{index}-{relative.name}")
        used.add(relative)
        (images / relative).parent.mkdir(parents=True, exist_ok=True)
        storage.save(images / relative)
    top = {path.parts[0] for path in used}
    default = next(iter(top)) if len(top) == 1 and len(used) > 1 else f"upload-{folder.name}"
    shown = str(next(iter(used))) if len(used) == 1 else f"{len(used)} uploaded files"
    return Upload(folder, images, default, shown)


def submit_upload(
    files: list[FileStorage],
    dataset: str,
    label: str | None,
    evaluation_only: bool,
    user_id: int | None,
) -> Job:
    """Save an upload and queue its import; the job deletes the upload when it succeeds."""
    dataset = dataset.strip()
    if len(dataset) > 200:
        raise UploadError("the dataset name is too long (200 characters at most)")
    if label not in (None, "", "real", "fake"):
        raise UploadError(f"unknown label {label!r}")
    upload = save_upload(files)
    params = {
        "path": str(upload.import_path),
        "dataset": dataset or upload.default_name,
        "label": label or None,
        "evaluation_only": bool(evaluation_only),
        "delete_after": str(upload.folder),
        "source_name": upload.source_name,
    }
    return submit("import", params, user_id=user_id)
