"""Importing images into the store: the CLI, the web upload job and scripts call
:func:`import_path`.

A folder or archive is listed (unsafe members refused), its files are read, hashed, checked and
decoded in worker processes (originals, thumbnails and pixel-cache rows built once, here), and the
rows are written in batches. Labels and splits come from the layout: ``REAL/`` and ``FAKE/`` at any
depth and in any case give the label, ``train/``, ``val/`` and ``test/`` the split; otherwise the
split is drawn from the content hash. Running the same import again adds nothing, and an import
that was interrupted is completed by running it again.

(Over 400 lines: the run's bookkeeping, its resumption and the web job share one ImportRun
life cycle; sources, workers, writes and the report are already their own modules.)
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from itertools import islice
from pathlib import Path

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...jobs import JobCancelled, JobFailed, handler
from ...models import Dataset, DatasetImage, Image, ImportRun, JobState, Label, Split, User, utcnow
from ...processes import process_alive
from ..records import audit_trail
from ..storage import clean_stale_temporaries, instance_root
from .database import BatchWriter, Item
from .pixel_cache import PixelCache
from .report import ImportReport
from .sources import Limits, SourceError, default_dataset_name, open_source
from .upload import uploads_root
from .worker import MAX_FILE_BYTES, WorkerSettings, process_chunk, run_ordered

__all__ = ["ImportRefused", "ImportReport", "SourceError", "assign_split", "import_path"]

LABEL_FOLDERS = {"real": Label.REAL, "fake": Label.FAKE}
SPLIT_FOLDERS = {
    "train": Split.TRAIN,
    "training": Split.TRAIN,
    "val": Split.VAL,
    "valid": Split.VAL,
    "validation": Split.VAL,
    "test": Split.TEST,
    "testing": Split.TEST,
}
TRAIN_FRACTION, VAL_FRACTION = 0.8, 0.1
# Below this many files a pool costs more than it saves.
SMALL_IMPORT = 16
CHUNK_BYTES = 32 * 1024**2
INTERRUPTED = "interrupted"

Progress = Callable[[int, int], None]


class ImportRefused(Exception):
    """The import cannot start (for example, it contradicts the dataset's evaluation flag)."""


# --- Labels and splits ----------------------------------------------------------------------


def layout_of(relative_path: str) -> tuple[str | None, str | None, str]:
    """(label, split, label folder) from the folders of a path inside an import, any case;
    the deepest matching folder wins."""
    folders = relative_path.split("/")[:-1]
    label, split, label_folder = None, None, ""
    for depth, folder in enumerate(folders):
        lowered = folder.lower()
        if lowered in LABEL_FOLDERS:
            label, label_folder = LABEL_FOLDERS[lowered], "/".join(folders[: depth + 1])
        if lowered in SPLIT_FOLDERS:
            split = SPLIT_FOLDERS[lowered]
    return label, split, label_folder


def hash_fraction(sha256: str) -> float:
    """A number in [0, 1), uniform over contents, fixed for a given content."""
    return int(sha256[:13], 16) / 16**13


def assign_split(sha256: str, layout_split: str | None = None, evaluation_only: bool = False):
    """The split of an image: from its hash, 80/10/10 within each class (the hash does not
    depend on the class, so every class is split in the same proportions); a ``test/`` folder
    forces test, a ``train/`` folder gives train or val (8:1); evaluation-only imports are test.

    Deterministic: the same content always lands in the same split, however often or in
    whatever order it is imported, so a test image can never drift into training.
    """
    if evaluation_only:
        return Split.TEST
    fraction = hash_fraction(sha256)
    if layout_split in (Split.TEST, Split.VAL):
        return layout_split
    if layout_split == Split.TRAIN:
        return (
            Split.TRAIN
            if fraction < TRAIN_FRACTION / (TRAIN_FRACTION + VAL_FRACTION)
            else (Split.VAL)
        )
    if fraction < TRAIN_FRACTION:
        return Split.TRAIN
    return Split.VAL if fraction < TRAIN_FRACTION + VAL_FRACTION else Split.TEST


# --- Datasets and runs ----------------------------------------------------------------------


def _dataset(name: str, evaluation_only: bool) -> Dataset:
    longest = Dataset.__table__.c.name.type.length  # PostgreSQL refuses longer ones
    if len(name) > longest:
        raise ImportRefused(
            f"the dataset name has {len(name)} characters; at most {longest}: choose a shorter one"
        )
    dataset = db.session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        try:
            dataset = Dataset(name=name, evaluation_only=evaluation_only)
            db.session.add(dataset)
            db.session.commit()
        except IntegrityError:  # created meanwhile by a concurrent import
            db.session.rollback()
            dataset = db.session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset.evaluation_only != evaluation_only:
        kind = "evaluation-only" if dataset.evaluation_only else "trainable"
        raise ImportRefused(
            f"dataset {name!r} exists and is {kind}; import into it "
            f"{'with' if dataset.evaluation_only else 'without'} --evaluation-only, "
            "or choose another dataset name"
        )
    return dataset


def mark_interrupted_runs() -> int:
    """Runs still 'running' whose process on this machine is gone become 'interrupted'."""
    host = socket.gethostname()
    count = 0
    for run in db.session.scalars(select(ImportRun).where(ImportRun.state == JobState.RUNNING)):
        info = run.report or {}
        if info.get("host") == host and info.get("pid") and not process_alive(info["pid"]):
            run.state = INTERRUPTED
            count += 1
    if count:
        db.session.commit()
    return count


def _start_run(dataset: Dataset, source: str) -> ImportRun:
    run = ImportRun(
        dataset_id=dataset.id,
        dataset_name=dataset.name,
        source=source,
        state=JobState.RUNNING,
        report={"pid": os.getpid(), "host": socket.gethostname()},
    )
    db.session.add(run)
    db.session.commit()
    return run


def _end_run(run_id: int, report: ImportReport, state: str) -> None:
    """Record how the run ended. An interruption inside a database call (Ctrl-C) leaves the
    session's connection invalidated: then try once more on a fresh session."""
    for attempt in (1, 2):
        try:
            db.session.rollback()
            run = db.session.get(ImportRun, run_id)
            run.state = state
            run.finished_at = utcnow()
            run.report = report.as_json()
            db.session.commit()
            return
        except Exception:
            db.session.remove()
            if attempt == 2:
                raise


# --- The import -----------------------------------------------------------------------------


def _limits(config) -> Limits:
    return Limits(
        max_archive_bytes=config["MAX_ARCHIVE_BYTES"],
        max_archive_ratio=config["MAX_ARCHIVE_RATIO"],
        max_file_bytes=config.get("MAX_IMAGE_FILE_BYTES", MAX_FILE_BYTES),
    )


def batch_rows() -> int:
    """Rows per transaction: ``IMPORT_BATCH_ROWS`` in the config or the environment, else 500
    (a few tenths of a second of work, so an interruption loses little)."""
    configured = current_app.config.get("IMPORT_BATCH_ROWS")
    return int(configured or os.environ.get("REALFAKE_IMPORT_BATCH_ROWS") or 500)


def import_path(
    path: str | os.PathLike,
    dataset: str | None = None,
    label: str | None = None,
    evaluation_only: bool = False,
    progress: Progress | None = None,
    workers: int | None = None,
    cache_size: int | None = None,
    source_name: str | None = None,
    user_id: int | None = None,
) -> ImportReport:
    """Import a folder, an image or a .zip/.tar/.tar.gz archive into ``dataset`` (default: its
    name) and return the report. ``label`` ("real"/"fake") overrides the layout's labels.
    ``source_name`` is what the records call the source (a web upload's file name rather than
    the server path it was saved to).

    Needs an application context. Raises SourceError when ``path`` cannot be read at all and
    ImportRefused when the dataset's evaluation flag differs from ``evaluation_only``. Either
    way, and when not one image could be read (the report's ``error`` says why), the run is
    recorded as failed and a dataset left empty by it is removed.
    """
    if label not in (None, Label.REAL, Label.FAKE):
        raise ValueError(f"label must be 'real' or 'fake', not {label!r}")
    config = current_app.config
    started = time.perf_counter()
    shown = source_name or str(path)
    name = dataset or default_dataset_name(Path(shown))
    try:
        source = open_source(path, _limits(config))
    except SourceError as error:
        _record_failed_run(name, shown, f"{Path(shown).name}: {error.reason}", user_id)
        raise
    clean_stale_temporaries()
    mark_interrupted_runs()
    target = _dataset(name, evaluation_only)
    # Plain values from here on: after an interruption the ORM objects may not load again.
    run_id, dataset_id = _start_run(target, shown).id, target.id
    report = ImportReport(target.name, target.evaluation_only, shown, import_id=run_id)
    report.files = len(source.entries) + len(source.rejected)
    for relative, reason in source.skipped_files:
        report.skip(relative, reason)
    for relative, reason in source.rejected:
        report.reject(relative, reason)
    try:
        importer = _Importer(
            source, target, run_id, report, label, cache_size or config["CACHE_SIZE"]
        )
        importer.run(workers or config["IMPORT_WORKERS"], progress)
    except BaseException as error:
        report.elapsed_s = time.perf_counter() - started
        cause = _interruption(error)
        _release_statements(error)
        # If even that fails, the run stays 'running' and is marked interrupted later.
        with suppress(Exception):
            _end_run(run_id, report, JobState.CANCELLED if cause else JobState.FAILED)
            remove_if_empty(dataset_id)
        if cause is not None and cause is not error:
            raise type(cause)() from error  # the caller sees the Ctrl-C (or cancel) it was
        raise
    report.elapsed_s = time.perf_counter() - started
    state = JobState.SUCCEEDED
    if report.nothing_read:
        report.error = report.failure_message()
        state = JobState.FAILED
    _end_run(run_id, report, state)
    if state == JobState.FAILED:
        remove_if_empty(dataset_id)
    _audit_import(report, user_id)
    return report


def _audit_import(report: ImportReport, user_id: int | None) -> None:
    user = db.session.get(User, user_id) if user_id else None
    outcome = report.error or (
        f"{report.imported} imported, {report.duplicates} duplicates, "
        f"{len(report.rejected)} rejected, {report.skipped} skipped"
    )
    audit_trail.record("import", report.dataset, f"{report.source}: {outcome}", user=user)
    db.session.commit()


def _record_failed_run(dataset: str, source: str, message: str, user_id: int | None) -> None:
    """A run that could not even start (the archive is unreadable): kept, with its reason, so
    the Imports table shows it; it belongs to no dataset."""
    existing = db.session.scalar(select(Dataset.id).where(Dataset.name == dataset))
    run = ImportRun(
        dataset_id=existing,
        dataset_name=dataset,
        source=source,
        state=JobState.FAILED,
        finished_at=utcnow(),
        report={"error": message, "dataset": dataset, "source": source},
    )
    db.session.add(run)
    user = db.session.get(User, user_id) if user_id else None
    audit_trail.record("import", dataset, f"{source}: {message}", user=user)
    db.session.commit()


def remove_if_empty(dataset_id: int) -> bool:
    """Delete a dataset that holds no image and that no other import is filling (what a failed
    or empty import leaves behind); its import runs keep their records and the dataset's name."""
    members = db.session.scalar(
        select(func.count()).select_from(DatasetImage).where(DatasetImage.dataset_id == dataset_id)
    )
    owned = db.session.scalar(
        select(func.count()).select_from(Image).where(Image.dataset_id == dataset_id)
    )
    running = db.session.scalar(
        select(func.count())
        .select_from(ImportRun)
        .where(ImportRun.dataset_id == dataset_id, ImportRun.state == JobState.RUNNING)
    )
    if members or owned or running:  # another import may be about to fill it
        return False
    db.session.execute(
        update(ImportRun).where(ImportRun.dataset_id == dataset_id).values(dataset_id=None)
    )
    db.session.execute(delete(Dataset).where(Dataset.id == dataset_id))
    db.session.commit()
    return True


def _interruption(error: BaseException) -> BaseException | None:
    """The Ctrl-C or cancellation behind ``error``, if any.

    A Ctrl-C that lands inside the database driver can surface as the error of the driver's
    own clean-up (psycopg: "can't change 'autocommit' now"; SQLAlchemy: an assertion in its
    commit), with the KeyboardInterrupt only in the exception's context.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt | JobCancelled):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _release_statements(error: BaseException) -> None:
    """Drop the locals of the frames ``error`` unwound, and of the errors behind it.

    A Ctrl-C that lands while SQLite steps a statement leaves that statement with the cursor in
    those frames; SQLAlchemy closes the connection, but SQLite keeps a connection whose statement
    is not finalised open, its write lock with it, so recording the run would wait for the lock
    it holds itself (seen as a 30 s stall, then a run left 'running').
    """
    seen, todo = set(), [error]
    while todo:
        error = todo.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        todo += [error.__cause__, error.__context__]


def _chunk_size(entries: list, workers: int) -> int:
    """Files per task: enough to amortise the hand-over, few enough to balance the workers
    and to keep the chunks in flight (tar members travel as bytes) within a few hundred MB."""
    if not entries:
        return 1
    average = sum(entry.size for entry in entries) / len(entries)
    by_balance = len(entries) // (max(workers, 1) * 16)
    by_memory = int(CHUNK_BYTES // max(average, 1))
    return max(1, min(64, by_balance, by_memory))


class _Importer:
    """One import's passes over its source: everything, then what must be decoded after all."""

    def __init__(self, source, dataset, import_id, report, label, cache_size):
        self.source = source
        self.evaluation_only = dataset.evaluation_only
        self.forced_label = label
        self.cache_size = cache_size
        self.settings = WorkerSettings.from_config(
            current_app.config, instance_root(), cache_size, archive=source.archive
        )
        self.batch_rows = batch_rows()
        cache = PixelCache(instance_root(), cache_size)
        self.writer = BatchWriter(dataset, import_id, report, cache)

    def run(self, workers: int, progress: Progress | None) -> None:
        entries = self.source.entries
        total, done = len(entries), 0
        if total < SMALL_IMPORT:
            workers = 1
        # Tar members arrive as a stream: decode them every time rather than read it twice.
        force = self.source.kind == "tar"
        todo = list(range(total))
        for _second_pass in (False, True):
            with closing(self._pass(todo, force, workers)) as counts:
                for count in counts:
                    done += count
                    if progress:
                        progress(done, total)
            todo, self.writer.redo = self.writer.redo, []
            if not todo:
                break
            total += len(todo)
            force = True

    def _pass(self, indices: list[int], force: bool, workers: int) -> Iterator[int]:
        entries = self.source.entries
        chosen = [entries[i] for i in indices]
        tasks = (
            (index, kind, ref, entries[index].path, force)
            for index, (kind, ref) in zip(indices, self.source.tasks(chosen), strict=True)
        )
        chunk_size = _chunk_size(chosen, workers)
        chunks = iter(lambda: list(islice(tasks, chunk_size)), [])
        with closing(run_ordered(process_chunk, chunks, self.settings, workers)) as results:
            for outcomes in results:
                for outcome in outcomes:
                    self.writer.add(self._item(entries[outcome.index].path, outcome))
                if len(self.writer.pending) >= self.batch_rows:
                    self.writer.flush()
                yield len(outcomes)
        self.writer.flush()

    def _item(self, path: str, outcome) -> Item:
        layout_label, layout_split, folder = layout_of(path)
        if self.forced_label:
            label, label_source = self.forced_label, "import option"
        elif layout_label:
            label, label_source = layout_label, f"folder {folder}"
        else:
            label, label_source = Label.UNKNOWN, ""
        split = ""
        if outcome.sha256:
            split = assign_split(outcome.sha256, layout_split, self.evaluation_only)
        return Item(outcome.index, path, outcome, str(label), label_source, str(split))


# --- The background job (web uploads) -------------------------------------------------------


@handler("import")
def import_job(context) -> dict:
    """Run :func:`import_path` for a web upload, reporting progress and honouring cancel."""
    params = context.params

    def progress(done: int, total: int) -> None:
        context.progress(done=done, total=total, fraction=round(done / total, 4) if total else 1)
        context.check_cancelled()

    try:
        report = import_path(
            params["path"],
            dataset=params.get("dataset") or None,
            label=params.get("label") or None,
            evaluation_only=bool(params.get("evaluation_only")),
            progress=progress,
            source_name=params.get("source_name"),
            user_id=context_user(context),
        )
    except (SourceError, ImportRefused) as error:
        _delete_upload(params)
        shown = params.get("source_name") or Path(params["path"]).name
        reason = error.reason if isinstance(error, SourceError) else str(error)
        raise JobFailed(f"{Path(shown).name}: {reason}") from error
    _delete_upload(params)
    if report.error:
        raise JobFailed(report.error)
    context.log(
        f"imported {report.imported}, duplicates {report.duplicates}, "
        f"rejected {len(report.rejected)} into {report.dataset!r}"
    )
    return report.as_json()


def context_user(context) -> int | None:
    """The user who started the job, for the audit trail."""
    from ...models import Job

    job = db.session.get(Job, context.job_id)
    return job.user_id if job is not None else None


def _delete_upload(params: dict) -> None:
    upload = params.get("delete_after")
    if upload and Path(upload).resolve().is_relative_to(uploads_root().resolve()):
        shutil.rmtree(upload, ignore_errors=True)
