"""The content-addressed image store in the instance folder.

Originals live under ``images/ab/<sha256>.<ext>`` and JPEG thumbnails under
``thumbnails/ab/<sha256>.jpg``: 256 folders each, created once, small enough for millions of
images, and an import does not pay for creating tens of thousands of folders. Files are written
to ``tmp/`` first and renamed into place, so a reader never sees half a file and an interrupted
import leaves at worst a stray temporary file, which :func:`clean_stale_temporaries` removes.

The path functions without a ``root`` argument need an application context; the ``*_under``
variants take the instance folder explicitly, for import worker processes that have no app.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from flask import current_app

from ..processes import process_alive

# A temporary file untouched this long was abandoned, whatever its name says.
STALE_AFTER_SECONDS = 3600
IMAGES_DIR = "images"
THUMBNAILS_DIR = "thumbnails"
# Pillow format name -> extension of the stored original.
EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "GIF": "gif",
    "TIFF": "tif",
}


def instance_root() -> Path:
    """The instance folder of the current app."""
    return Path(current_app.config["INSTANCE_PATH"])


def extension_for(image_format: str) -> str:
    """The file extension the store uses for a Pillow format name (``JPEG`` -> ``jpg``)."""
    return EXTENSIONS.get(image_format.upper(), image_format.lower())


def blob_relative(sha256: str, ext: str) -> str:
    """The original's path relative to the instance folder (``images/ab/<sha>.<ext>``)."""
    return f"{IMAGES_DIR}/{sha256[:2]}/{sha256}.{ext.lstrip('.')}"


def thumbnail_relative(sha256: str) -> str:
    """The thumbnail's path relative to the instance folder (``thumbnails/ab/<sha>.jpg``)."""
    return f"{THUMBNAILS_DIR}/{sha256[:2]}/{sha256}.jpg"


def images_root() -> Path:
    """The folder of the stored originals."""
    return instance_root() / IMAGES_DIR


def thumbnails_root() -> Path:
    """The folder of the stored thumbnails."""
    return instance_root() / THUMBNAILS_DIR


def blob_path_under(root: Path | str, sha256: str, ext: str) -> Path:
    """Where the original with this hash is stored under the instance folder ``root``."""
    return Path(root) / blob_relative(sha256, ext)


def thumbnail_path_under(root: Path | str, sha256: str) -> Path:
    """Where the JPEG thumbnail of this hash is stored under the instance folder ``root``."""
    return Path(root) / thumbnail_relative(sha256)


def temporary_dir_under(root: Path | str) -> Path:
    """The folder for files being written; on the same file system as the store, so renames
    into place are atomic."""
    return Path(root) / "tmp"


def blob_path(sha256: str, ext: str) -> Path:
    """Where the original with content hash ``sha256`` and extension ``ext`` is stored."""
    return blob_path_under(instance_root(), sha256, ext)


def original_path(image) -> Path:
    """The stored original of an :class:`~webapp.models.Image` row."""
    return blob_path(image.sha256, extension_for(image.format))


def thumbnail_path(sha256: str) -> Path:
    """The JPEG thumbnail (long side ``THUMBNAIL_SIZE``) of the image with this hash."""
    return thumbnail_path_under(instance_root(), sha256)


def servable_file(path: Path, folder: Path) -> Path | None:
    """``path`` resolved, when it is a regular file that really lies inside ``folder``; else None.

    Everything the web serves from the instance folder goes through this: a name that climbs out
    (``..``), or a symbolic link planted in the store that points elsewhere (the secret key, the
    database, ``/etc``), must read as a missing file, never as that other file's content.
    """
    try:
        resolved = path.resolve(strict=True)
        inside = resolved.is_relative_to(folder.resolve(strict=True))
    except (OSError, RuntimeError):  # missing, a link loop, an unreadable folder
        return None
    return resolved if inside and resolved.is_file() else None


def write_atomic(path: Path, data: bytes, temporary_dir: Path) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent or complete.

    The temporary name carries the writer's process id so that
    :func:`clean_stale_temporaries` can tell abandoned files from files still being written.
    """
    temporary_dir.mkdir(parents=True, exist_ok=True)
    temporary = temporary_dir / f"{os.getpid()}-{secrets.token_hex(6)}.part"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def stale_temporaries(root: Path | str | None = None) -> list[Path]:
    """Temporary files whose writer is gone (Ctrl-C, kill -9) or that were abandoned long ago."""
    folder = temporary_dir_under(root if root is not None else instance_root())
    if not folder.is_dir():
        return []
    stale = []
    old = time.time() - STALE_AFTER_SECONDS
    for entry in folder.iterdir():
        pid_text = entry.name.split("-", 1)[0]
        try:
            abandoned = entry.stat().st_mtime < old  # its pid may belong to another by now
        except FileNotFoundError:
            continue
        if abandoned or not pid_text.isdigit() or not process_alive(int(pid_text)):
            stale.append(entry)
    return stale


def clean_stale_temporaries(root: Path | str | None = None) -> int:
    """Delete temporary files left by writers that died (Ctrl-C, kill -9); returns how many."""
    stale = stale_temporaries(root)
    for entry in stale:
        entry.unlink(missing_ok=True)
    return len(stale)
