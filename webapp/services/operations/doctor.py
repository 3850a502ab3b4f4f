"""``flask doctor``: check the database against the image store and the instance folder.

Every check yields :class:`Finding` objects; with ``repair`` each also fixes what it safely can.
What is safe:

- files nothing references (orphaned originals and thumbnails, written by an import killed before
  its commit; checkpoint files of a training killed before its version row) are deleted, but never
  while an import or a training that could still adopt them is running, and each file is checked
  once more against the database right before it goes;
- temporary files of writers that are gone are deleted;
- a missing original is copied back from a verified copy (same SHA-256) when one exists; a missing
  thumbnail is rebuilt from its original;
- jobs of dead workers are re-queued (resumable kinds) or failed, stuck import runs are marked
  interrupted, expired leases are released;
- a version whose checkpoint moved into this instance's ``models/`` (a restored backup) is pointed
  at it. A version whose checkpoint is really gone is reported, never deleted, and the active one
  is called out.

Rows are never deleted to make the store agree: review decisions hang off them.

(Over 400 lines on purpose: every check shares the Finding type and the repair rules, and the
list of checks reads as one table.)
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from flask import current_app
from PIL import Image as PILImage
from sqlalchemy import delete, select

from model.images import to_rgb

from ...extensions import db
from ...jobs.recovery import abandoned_jobs, recover_abandoned_jobs
from ...models import DatasetImage, Image, ImportRun, Job, JobState, Lease, ModelVersion, utcnow
from ...processes import process_alive
from ..importing.importer import INTERRUPTED
from ..importing.worker import THUMBNAIL_QUALITY, thumbnail_dimensions
from ..storage import (
    blob_relative,
    extension_for,
    instance_root,
    stale_temporaries,
    temporary_dir_under,
    thumbnail_relative,
    write_atomic,
)

BLOB_NAME = re.compile(r"^([0-9a-f]{64})\.([a-z0-9]+)$")
CHECKPOINT_NAME = re.compile(r"^(?P<name>[^.]+)\.(?P<kind>pt|labels\.npz)$")


@dataclass
class Finding:
    """One thing doctor found; ``problem`` False marks a remark that needs no action."""

    check: str
    subject: str
    message: str
    repaired: bool = False
    problem: bool = True

    def line(self) -> str:
        """The human-readable line the CLI prints."""
        status = "repaired" if self.repaired else ("problem" if self.problem else "note")
        return f"[{status}] {self.check}: {self.subject}: {self.message}"

    def as_json(self) -> dict:
        return asdict(self)


class Doctor:
    """Runs every check in turn; ``repair`` makes the checks fix what they safely can."""

    def __init__(self, repair: bool = False) -> None:
        self.repair = repair
        self.root = instance_root()
        self.findings: list[Finding] = []

    def run(self) -> list[Finding]:
        """All findings, checks in a fixed order (jobs and imports first: their state decides
        whether files may be adopted by a running writer)."""
        for check in (
            self.check_jobs,
            self.check_import_runs,
            self.check_temporaries,
            self.check_store,
            self.check_checkpoints,
            self.check_leases,
        ):
            self.findings.extend(check())
        return self.findings

    def remaining(self) -> int:
        """How many problems are left unrepaired."""
        return sum(1 for f in self.findings if f.problem and not f.repaired)

    # -- jobs and import runs ------------------------------------------------------------------

    def check_jobs(self) -> Iterator[Finding]:
        if self.repair:
            for recovery in recover_abandoned_jobs():
                yield Finding(
                    "abandoned-job", f"job {recovery.job_id}", recovery.describe(), repaired=True
                )
        for job, reason in abandoned_jobs():
            yield Finding(
                "abandoned-job",
                f"job {job.id}",
                f"{job.kind} left running by {job.worker or 'an unknown worker'}: {reason}",
            )

    def check_import_runs(self) -> Iterator[Finding]:
        host = socket.gethostname()
        runs = db.session.scalars(select(ImportRun).where(ImportRun.state == JobState.RUNNING))
        for run in runs:
            info = run.report or {}
            if info.get("host") != host or not info.get("pid") or process_alive(info["pid"]):
                continue
            if self.repair:
                run.state = INTERRUPTED
                run.finished_at = utcnow()
                db.session.commit()
            yield Finding(
                "stuck-import",
                f"import run {run.id}",
                f"'running' but its process {info['pid']} is gone; marked interrupted "
                "(importing the same source again completes it)"
                if self.repair
                else f"'running' but its process {info['pid']} is gone",
                repaired=self.repair,
            )

    def _writers_running(self, kinds: tuple[str, ...]) -> list[str]:
        """Writers that may still adopt unreferenced files: queued or running jobs of
        ``kinds`` (a re-queued import adopts what its first run wrote) and, for imports, import
        runs still running, whatever process runs them."""
        db.session.expire_all()
        dead = {job.id for job, _ in abandoned_jobs()}
        in_flight = Job.state.in_([JobState.QUEUED, JobState.RUNNING])
        live = [
            f"job {job.id} ({job.kind}, {job.state})"
            for job in db.session.scalars(select(Job).where(in_flight, Job.kind.in_(kinds)))
            if job.id not in dead
        ]
        if "import" in kinds:
            host = socket.gethostname()
            for run in db.session.scalars(
                select(ImportRun).where(ImportRun.state == JobState.RUNNING)
            ):
                info = run.report or {}
                gone = (
                    info.get("host") == host and info.get("pid") and not process_alive(info["pid"])
                )
                if not gone:
                    live.append(f"import run {run.id}")
        return live

    # -- files ---------------------------------------------------------------------------------

    def check_temporaries(self) -> Iterator[Finding]:
        for path in stale_temporaries(self.root):
            if self.repair:
                path.unlink(missing_ok=True)
            yield Finding(
                "temporary-file",
                self._relative(path),
                "left by a writer that is gone" + ("; removed" if self.repair else ""),
                repaired=self.repair,
            )

    def check_store(self) -> Iterator[Finding]:
        rows = db.session.execute(select(Image.id, Image.sha256, Image.format)).all()
        expected = {
            blob_relative(sha, extension_for(fmt)): (image_id, sha) for image_id, sha, fmt in rows
        }
        hashes = {sha for _, sha, _ in rows}
        originals = set(self._files("images"))
        thumbnails = set(self._files("thumbnails"))
        yield from self._orphans(originals - expected.keys(), thumbnails, hashes)
        for relative in sorted(expected.keys() - originals):
            yield self._missing_original(relative, *expected[relative])
        for relative in sorted(originals & expected.keys()):
            sha = expected[relative][1]
            if thumbnail_relative(sha) not in thumbnails:
                yield self._missing_thumbnail(relative, sha)

    def _files(self, folder: str) -> Iterator[str]:
        base = self.root / folder
        if not base.is_dir():
            return
        for directory, _folders, names in os.walk(base):
            for name in names:
                yield os.path.relpath(os.path.join(directory, name), self.root)

    def _orphans(self, originals: set[str], thumbnails: set[str], hashes: set[str]):
        orphan_thumbnails = {t for t in thumbnails if Path(t).stem not in hashes}
        candidates = sorted(originals | orphan_thumbnails)
        if not candidates:
            return
        writers = self._writers_running(("import",)) if self.repair else []
        # Checked again right before deleting: an import may have committed since the listing.
        referenced = self._referenced_hashes({Path(c).name.split(".")[0] for c in candidates})
        for relative in candidates:
            sha = Path(relative).name.split(".")[0]
            kind = "thumbnail" if relative.startswith("thumbnails/") else "original"
            if not BLOB_NAME.match(Path(relative).name):
                yield Finding(
                    "unexpected-file", relative, "not a file the store writes; left alone"
                )
                continue
            message = f"{kind} that no image row references"
            repaired = False
            if self.repair and writers:
                message += f"; left alone while {', '.join(writers)} may still adopt it"
            elif self.repair and sha in referenced:
                continue  # adopted since the listing
            elif self.repair:
                (self.root / relative).unlink(missing_ok=True)
                message, repaired = message + "; removed", True
            yield Finding("orphaned-blob", relative, message, repaired=repaired)

    def _referenced_hashes(self, hashes: set[str]) -> set[str]:
        db.session.expire_all()
        found: set[str] = set()
        ordered = sorted(hashes)
        for start in range(0, len(ordered), 5000):
            chunk = ordered[start : start + 5000]
            found.update(db.session.scalars(select(Image.sha256).where(Image.sha256.in_(chunk))))
        return found

    def _missing_original(self, relative: str, image_id: int, sha: str) -> Finding:
        subject = f"image {image_id}"
        message = f"its original {relative} is missing"
        if not self.repair:
            return Finding("missing-blob", subject, message)
        for copy in self._copies_of(image_id, sha):
            write_atomic(self.root / relative, copy, temporary_dir_under(self.root))
            return Finding(
                "missing-blob", subject, message + "; restored from a verified copy", True
            )
        return Finding(
            "missing-blob",
            subject,
            message + "; no copy with the same SHA-256 was found (put the file back, or "
            "import its source folder again once its thumbnail is gone)",
        )

    def _copies_of(self, image_id: int, sha: str) -> Iterator[bytes]:
        """Files that hold exactly this content: the store under another extension, or the
        folder an import read it from."""
        candidates = list((self.root / "images" / sha[:2]).glob(f"{sha}.*"))
        sources = db.session.execute(
            select(ImportRun.source, DatasetImage.original_path)
            .join(ImportRun, ImportRun.id == DatasetImage.import_id)
            .where(DatasetImage.image_id == image_id)
        ).all()
        candidates += [Path(source) / inner for source, inner in sources if Path(source).is_dir()]
        for candidate in candidates:
            try:
                data = candidate.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == sha:
                yield data

    def _missing_thumbnail(self, relative: str, sha: str) -> Finding:
        subject = thumbnail_relative(sha)
        message = "thumbnail missing (the review screen shows it)"
        if not self.repair:
            return Finding("missing-thumbnail", subject, message)
        size = int(current_app.config["THUMBNAIL_SIZE"])
        with PILImage.open(self.root / relative) as picture:
            picture.draft("RGB", (size, size))
            rgb = to_rgb(picture)
            rgb = rgb.resize(thumbnail_dimensions(*rgb.size, size), PILImage.Resampling.BILINEAR)
            buffer = io.BytesIO()
            rgb.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
        write_atomic(self.root / subject, buffer.getvalue(), temporary_dir_under(self.root))
        return Finding("missing-thumbnail", subject, message + "; rebuilt from the original", True)

    # -- checkpoints ---------------------------------------------------------------------------

    def check_checkpoints(self) -> Iterator[Finding]:
        models = self.root / "models"
        versions = list(db.session.scalars(select(ModelVersion).order_by(ModelVersion.id)))
        for version in versions:
            if version.checkpoint_path and Path(version.checkpoint_path).is_file():
                continue
            yield self._missing_checkpoint(version, models / f"{version.name}.pt")
        known = {v.name for v in versions}
        yield from self._unowned_files(models, known, "checkpoint")
        yield from self._unowned_files(self.root / "features", known, "features")

    def _missing_checkpoint(self, version: ModelVersion, moved: Path) -> Finding:
        subject = f"version {version.name}"
        if moved.is_file() and self.repair:
            version.checkpoint_path = str(moved)
            db.session.commit()
            return Finding(
                "missing-checkpoint", subject, f"checkpoint found at {moved}; path updated", True
            )
        if moved.is_file():
            return Finding(
                "missing-checkpoint",
                subject,
                f"recorded checkpoint {version.checkpoint_path or '(none)'} is missing; "
                f"{self._relative(moved)} is here",
            )
        message = f"checkpoint {version.checkpoint_path or '(none)'} is missing"
        if version.is_active:
            message += (
                "; this is the ACTIVE version: scoring and heatmaps fail until another "
                "version is activated (flask --app wsgi model activate NAME) or it is restored"
            )
        return Finding("missing-checkpoint", subject, message)

    def _unowned_files(self, folder: Path, known: set[str], what: str) -> Iterator[Finding]:
        if not folder.is_dir():
            return
        unowned = []
        for path in sorted(folder.iterdir()):
            match = CHECKPOINT_NAME.match(path.name) if what == "checkpoint" else None
            name = match["name"] if match else path.name.split(".")[0]
            temporary = path.name.endswith(".tmp")
            if path.is_file() and (temporary or name not in known):
                unowned.append(path)
        if not unowned:
            return
        writers = self._writers_running(("train", "predict")) if self.repair else []
        db.session.expire_all()
        known = set(db.session.scalars(select(ModelVersion.name)))
        for path in unowned:
            if not path.name.endswith(".tmp") and path.name.split(".")[0] in known:
                continue  # its version was registered since the listing
            message = f"{what} file without a model version"
            repaired = False
            if self.repair and writers:
                message += f"; left alone while {', '.join(writers)} may still register it"
            elif self.repair:
                path.unlink(missing_ok=True)
                message, repaired = message + "; removed", True
            yield Finding(f"orphaned-{what}", self._relative(path), message, repaired=repaired)

    # -- leases --------------------------------------------------------------------------------

    def check_leases(self) -> Iterator[Finding]:
        expired = Lease.expires_at < utcnow()
        leases = db.session.execute(select(Lease.image_id, Lease.user_id).where(expired)).all()
        if self.repair and leases:
            db.session.execute(delete(Lease).where(expired))
            db.session.commit()
        for image_id, user_id in leases:
            yield Finding(
                "expired-lease",
                f"image {image_id}",
                f"lease of user {user_id} expired" + ("; released" if self.repair else ""),
                repaired=self.repair,
                problem=False,  # harmless: the queue ignores it; released to keep the table small
            )

    def _relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


def machine_status() -> dict:
    """Facts, not findings: the running job workers with their thread settings, and the engine
    choices measured on this instance (``engines``). Read without loading PyTorch."""
    from ...jobs.presence import running_workers
    from ..training import engines

    workers = [
        {"identity": row.identity, "settings": row.settings, "seen_at": row.seen_at.isoformat()}
        for row in running_workers()
    ]
    measured = {
        key: engines.describe_entry(entry) for key, entry in engines.stored_entries().items()
    }
    return {"workers": workers, "engines": measured}


def status_lines(status: dict) -> list[str]:
    """``machine_status`` as the lines the CLI prints."""
    from ...jobs.presence import START_HINT

    lines = [f"[info] worker {w['identity']}: {w['settings']}" for w in status["workers"]]
    if not status["workers"]:
        lines.append(f"[info] no job worker is running: queued jobs wait for `{START_HINT}`")
    lines += [f"[info] engine {key}: {line}" for key, line in sorted(status["engines"].items())]
    return lines


def run_doctor(repair: bool = False) -> Doctor:
    """Run every check (and repair when asked); the Doctor holds the findings."""
    doctor = Doctor(repair=repair)
    doctor.run()
    return doctor
