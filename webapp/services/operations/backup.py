"""Online backup and restore of an instance: the database, the image store and the checkpoints.

A backup is a folder:

- ``manifest.json``: format, time, the schema revision, rows per table, files copied (written
  last: a folder without it is not a backup);
- ``database/<table>.jsonl``: every row of every table, one JSON object a line, all read inside
  one snapshot transaction (SQLite: a read transaction on the WAL, PostgreSQL: REPEATABLE READ,
  read only), so the rows are consistent with each other however busy the desk is;
- ``files/``: the originals and thumbnails the snapshot's images reference, and the checkpoint,
  training-label and feature files of its versions, and the secret key.

Blobs are content-addressed and never change once written, and the importer writes them before
their rows commit, so copying after the snapshot copies exactly what the snapshot needs; every
original's SHA-256 is checked on the way out and on the way back in. The dump is logical, so a
backup of a SQLite desk restores into PostgreSQL and back. The pixel cache and reports are not
copied: they are rebuilt from the originals on demand.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flask import current_app
from flask_migrate import upgrade
from sqlalchemy import (
    Connection,
    Date,
    DateTime,
    LargeBinary,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy import delete as sql_delete
from sqlalchemy.pool import NullPool

from ...extensions import db
from ...models import Image, ModelVersion
from ..storage import blob_relative, extension_for, instance_root, thumbnail_relative

FORMAT = 1
BATCH = 1000
# Folders of the instance a restore replaces (``--force``) and a fresh instance must lack.
STORE_FOLDERS = ("images", "thumbnails", "models", "features", "cache")


class BackupError(Exception):
    """The backup or restore cannot go on; the message says why and what to do."""


@dataclass
class BackupSummary:
    """What a backup holds (also the manifest's content)."""

    path: str
    revision: str
    dialect: str
    tables: dict[str, int] = field(default_factory=dict)
    files: int = 0
    missing: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "path": self.path,
            "revision": self.revision,
            "dialect": self.dialect,
            "tables": self.tables,
            "files": self.files,
            "missing": self.missing,
        }


def _tables():
    return db.metadata.sorted_tables  # parents before children


# --- Values in and out of JSON ----------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot back up a {type(value).__name__}")


def _decoders(table) -> dict[str, Any]:
    """Per column, how to turn a JSON value back into what the column takes."""
    decoders = {}
    for column in table.columns:
        if isinstance(column.type, DateTime):
            decoders[column.name] = datetime.fromisoformat
        elif isinstance(column.type, Date):
            decoders[column.name] = date.fromisoformat
        elif isinstance(column.type, LargeBinary):
            decoders[column.name] = base64.b64decode
    return decoders


# --- The snapshot -----------------------------------------------------------------------------


def _snapshot_connection() -> tuple[Connection, Any]:
    """A connection whose transaction sees one consistent state of the database, and the engine
    to dispose of afterwards (None when it is the app's)."""
    engine = db.engine
    if engine.dialect.name == "sqlite":
        # pysqlite starts transactions only before writes, so each SELECT would see its own
        # state: open the read transaction ourselves (WAL keeps it from blocking writers).
        snapshot = create_engine(engine.url, poolclass=NullPool)

        @event.listens_for(snapshot, "connect")
        def _connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA busy_timeout=30000")

        @event.listens_for(snapshot, "begin")
        def _begin(connection):
            connection.exec_driver_sql("BEGIN")

        return snapshot.connect(), snapshot
    connection = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    return connection, None


def _dump_tables(connection: Connection, folder: Path, summary: BackupSummary) -> None:
    folder.mkdir(parents=True)
    for table in _tables():
        order = list(table.primary_key.columns)
        count = 0
        with open(folder / f"{table.name}.jsonl", "w", encoding="utf-8") as out:
            result = connection.execution_options(stream_results=True).execute(
                select(table).order_by(*order)
            )
            for row in result.mappings():
                out.write(json.dumps(dict(row), default=_encode) + "\n")
                count += 1
        summary.tables[table.name] = count


def _snapshot(folder: Path, summary: BackupSummary) -> None:
    connection, own_engine = _snapshot_connection()
    try:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            summary.revision = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version"
            ).scalar_one()
            _dump_tables(connection, folder, summary)
    finally:
        connection.close()
        if own_engine is not None:
            own_engine.dispose()


# --- Files ------------------------------------------------------------------------------------


def _rows(database: Path, table: str) -> Iterator[dict[str, Any]]:
    with open(database / f"{table}.jsonl", encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def _copy_verified(source: Path, target: Path, sha256: str | None) -> None:
    """Copy ``source`` to ``target`` (atomically), checking the content hash when given."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(temporary, "wb") as writer:
        while chunk := reader.read(1024 * 1024):
            digest.update(chunk)
            writer.write(chunk)
    if sha256 is not None and digest.hexdigest() != sha256:
        temporary.unlink()
        raise BackupError(f"{source} does not hold the content its row names (SHA-256 differs)")
    os.replace(temporary, target)


def _referenced_files(database: Path) -> Iterator[tuple[str, str | None, str | None]]:
    """(path relative to the instance, expected SHA-256, absolute source path or None) of every
    file the dumped rows need."""
    for row in _rows(database, Image.__tablename__):
        yield blob_relative(row["sha256"], extension_for(row["format"])), row["sha256"], None
        yield thumbnail_relative(row["sha256"]), None, None
    for row in _rows(database, ModelVersion.__tablename__):
        name = row["name"]
        yield f"models/{name}.pt", None, row["checkpoint_path"] or None
        yield f"models/{name}.labels.npz", None, None
        yield f"features/{name}.npz", None, None


def _copy_files(database: Path, files: Path, summary: BackupSummary) -> None:
    root = instance_root()
    optional = (".labels.npz", ".npz")
    for relative, sha256, absolute in _referenced_files(database):
        source = Path(absolute) if absolute else root / relative
        if not source.is_file():
            if not relative.endswith(optional):
                summary.missing.append(relative)
            continue
        _copy_verified(source, files / relative, sha256)
        summary.files += 1
    secret = root / "secret_key"
    if secret.is_file():
        _copy_verified(secret, files / "secret_key", None)


def create_backup(path: str | os.PathLike) -> BackupSummary:
    """Back up the current app's database and files into the new folder ``path``."""
    target = Path(path).resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} exists and is not empty: choose a new folder")
    # Built beside the target and renamed at the end, so ``path`` is either absent or complete.
    work = target.with_name(f".{target.name}.partial-{secrets.token_hex(4)}")
    work.mkdir(parents=True)
    summary = BackupSummary(path=str(target), revision="", dialect=db.engine.dialect.name)
    try:
        _snapshot(work / "database", summary)
        _copy_files(work / "database", work / "files", summary)
        summary_json = summary.as_json()
        summary_json["source_instance"] = str(instance_root())
        (work / "manifest.json").write_text(json.dumps(summary_json, indent=2))
        if target.exists():
            target.rmdir()
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return summary


# --- Restore ----------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    """The backup's manifest; BackupError when ``path`` is not a complete backup."""
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise BackupError(f"{path} is not a complete backup (no manifest.json)")
    manifest = json.loads(manifest_file.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')} is not {FORMAT}")
    return manifest


def _schema_head() -> str:
    from alembic.script import ScriptDirectory

    config = current_app.extensions["migrate"].migrate.get_config()
    heads = ScriptDirectory.from_config(config).get_heads()
    return heads[0] if len(heads) == 1 else ",".join(sorted(heads))


def instance_contents() -> list[str]:
    """What makes the current instance non-empty (tables with rows, store folders with files)."""
    found = []
    inspector = inspect(db.engine)
    existing = set(inspector.get_table_names())
    for table in _tables():
        if table.name in existing:
            rows = db.session.scalar(select(func.count()).select_from(table))
            if rows:
                found.append(f"{table.name}: {rows} rows")
    root = instance_root()
    for folder in STORE_FOLDERS:
        if (root / folder).is_dir() and any((root / folder).rglob("*")):
            found.append(f"{folder}/ has files")
    db.session.rollback()
    return found


def _empty_instance() -> None:
    for table in reversed(_tables()):
        db.session.execute(sql_delete(table))
    db.session.commit()
    root = instance_root()
    for folder in STORE_FOLDERS:
        shutil.rmtree(root / folder, ignore_errors=True)


def _restore_files(backup: Path) -> int:
    """Copy the backup's files into the instance, checking every original's hash."""
    root = instance_root()
    files = backup / "files"
    count = 0
    hashes = {
        blob_relative(row["sha256"], extension_for(row["format"])): row["sha256"]
        for row in _rows(backup / "database", Image.__tablename__)
    }
    for directory, _folders, names in os.walk(files):
        for name in names:
            source = Path(directory) / name
            relative = str(source.relative_to(files))
            _copy_verified(source, root / relative, hashes.get(relative))
            count += 1
    return count


def _restore_rows(backup: Path) -> dict[str, int]:
    counts = {}
    models = instance_root() / "models"
    connection = db.session.connection()
    for table in _tables():
        decoders = _decoders(table)
        batch: list[dict[str, Any]] = []
        counts[table.name] = 0
        for row in _rows(backup / "database", table.name):
            for column, decode in decoders.items():
                if row.get(column) is not None:
                    row[column] = decode(row[column])
            if table.name == ModelVersion.__tablename__:
                row["checkpoint_path"] = _moved_checkpoint(row, models)
            batch.append(row)
            if len(batch) >= BATCH:
                connection.execute(table.insert(), batch)
                counts[table.name] += len(batch)
                batch = []
        if batch:
            connection.execute(table.insert(), batch)
            counts[table.name] += len(batch)
    _reset_sequences(connection)
    return counts


def _moved_checkpoint(row: dict[str, Any], models: Path) -> str:
    """The checkpoint's path in this instance (the backup carried it as models/<name>.pt)."""
    restored = models / f"{row['name']}.pt"
    return str(restored) if restored.is_file() else row["checkpoint_path"]


def _reset_sequences(connection: Connection) -> None:
    """PostgreSQL's id sequences do not see explicit ids: move each past the restored rows."""
    if connection.dialect.name != "postgresql":
        return
    for table in _tables():
        columns = list(table.primary_key.columns)
        if len(columns) != 1 or not columns[0].autoincrement or columns[0].name != "id":
            continue
        connection.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
        )


def restore_backup(path: str | os.PathLike, force: bool = False) -> dict[str, Any]:
    """Restore the backup at ``path`` into the current app's instance, which must be empty
    unless ``force`` (then its data is replaced). Builds the schema when the database is new."""
    backup = Path(path).resolve()
    manifest = read_manifest(backup)
    head = _schema_head()
    if manifest["revision"] != head:
        raise BackupError(
            f"the backup has schema revision {manifest['revision']}, this code {head}: "
            "restore it with the code that made it, then upgrade (flask --app wsgi db upgrade)"
        )
    contents = instance_contents()
    if contents and not force:
        raise BackupError(
            "the instance is not empty ("
            + "; ".join(contents[:5])
            + "): restore into a fresh instance, or pass --force to replace its data"
        )
    upgrade()  # a fresh database gets the schema the backup was made with
    if contents:
        _empty_instance()
    # Files first, rows last: an interrupted restore leaves at worst unreferenced files.
    files = _restore_files(backup)
    try:
        counts = _restore_rows(backup)
        if counts != manifest["tables"]:
            raise BackupError(
                f"restored rows {counts} differ from the manifest's {manifest['tables']}"
            )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return {"tables": counts, "files": files, "revision": manifest["revision"]}
