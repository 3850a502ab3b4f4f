"""What an import reads: a folder, a single image, or a .zip / .tar / .tar.gz archive.

Listing a source checks everything that can be checked without decoding: path traversal and links
in archive member names, archive bombs (total declared size, compression ratio), zero-byte and
oversized files. Archives are never extracted to disk: members are read into memory one by one,
so a hostile member name cannot write anywhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
# Operating-system litter that is not part of any dataset; skipped and counted, not rejected.
JUNK_NAMES = {"__macosx", "thumbs.db", "desktop.ini", ".ds_store"}
# Sidecar documents that travel with datasets (manifests, READMEs, label lists) are skipped and
# counted, not rejected: they were never meant to be images.
DOCUMENT_SUFFIXES = (
    ".json",
    ".txt",
    ".md",
    ".csv",
    ".tsv",
    ".yaml",
    ".yml",
    ".xml",
    ".xmp",
    ".log",
)
# Below this size a member cannot be a dangerous bomb, whatever its ratio (tiny flat images
# compress very well).
RATIO_CHECK_FLOOR = 1024 * 1024
LOCAL_HEADER_SIZE = 30


class SourceError(Exception):
    """The path cannot be imported at all (missing, unreadable, not a known archive).

    ``reason`` is the message without the path, for pages that must not show server paths."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """Size limits from the configuration."""

    max_archive_bytes: int
    max_archive_ratio: float
    max_file_bytes: int


class ZipMember(NamedTuple):
    """Where a zip member's bytes are, from the central directory (listed once, in the main
    process), so workers read members without parsing the directory again."""

    index: int
    header_offset: int
    compress_size: int
    file_size: int
    compress_type: int
    crc: int


class DamagedMember(Exception):
    """A zip member whose bytes do not match its directory entry."""


class UnsupportedCompression(Exception):
    """A zip member compressed other than stored or deflated (read with zipfile instead)."""


def read_zip_member(handle: BinaryIO, member: ZipMember) -> bytes:
    """The bytes of ``member``, read from the open archive; never more than its declared
    size, checked against its CRC."""
    handle.seek(member.header_offset)
    header = handle.read(LOCAL_HEADER_SIZE)
    if len(header) != LOCAL_HEADER_SIZE or header[:4] != b"PK\x03\x04":
        raise DamagedMember("no local header where the directory says")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    handle.seek(member.header_offset + LOCAL_HEADER_SIZE + name_length + extra_length)
    raw = handle.read(member.compress_size)
    if member.compress_type == zipfile.ZIP_STORED:
        data = raw
    elif member.compress_type == zipfile.ZIP_DEFLATED:
        try:
            data = zlib.decompressobj(-15).decompress(raw, member.file_size + 1)
        except zlib.error as error:
            raise DamagedMember(str(error)) from error
    else:
        raise UnsupportedCompression(member.compress_type)
    if len(data) != member.file_size or zlib.crc32(data) != member.crc:
        raise DamagedMember("size or CRC does not match the directory")
    return data


@dataclass
class Entry:
    """One file to import: its path inside the import (``/``-separated) and how to read it."""

    path: str
    kind: str  # file | zip | tar
    ref: Any  # file path | ZipMember | position in the tar stream
    size: int


@dataclass
class Source:
    """A listed source: the files to import and those refused before decoding."""

    path: Path
    kind: str  # folder | file | zip | tar
    entries: list[Entry] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    # Files that are not images and were never meant to be (documents, OS litter), with why.
    skipped_files: list[tuple[str, str]] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """How many files were skipped as not meant to be images."""
        return len(self.skipped_files)

    @property
    def archive(self) -> str | None:
        """The zip path workers open themselves (tar members are streamed to them instead)."""
        return str(self.path) if self.kind == "zip" else None

    def tasks(self, entries: list[Entry]) -> Iterator[tuple[str, Any]]:
        """(kind, ref) for each entry, in order; tar members are read here, lazily."""
        if self.kind != "tar":
            for entry in entries:
                yield entry.kind, entry.ref
            return
        wanted = {entry.ref for entry in entries}
        with tarfile.open(self.path, "r:*") as archive:
            for position, member in enumerate(archive):
                if position in wanted:
                    yield "bytes", archive.extractfile(member).read()


def default_dataset_name(path: Path) -> str:
    """The dataset name an import gets when none is given: the folder or archive name."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def is_junk(relative_path: str) -> bool:
    """Hidden files, OS metadata (``.DS_Store``, ``__MACOSX/``) and sidecar documents."""
    return junk_reason(relative_path) is not None


def junk_reason(relative_path: str) -> str | None:
    """Why a file is skipped rather than imported (a document, system or hidden file), or None."""
    parts = relative_path.split("/")
    if relative_path.lower().endswith(DOCUMENT_SUFFIXES):
        suffix = relative_path.rsplit(".", 1)[-1].lower()
        return f"a .{suffix} document, not an image"
    if any(part.lower() in JUNK_NAMES for part in parts if part):
        return "operating-system metadata, not an image"
    if any(part.startswith(".") for part in parts if part):
        return "a hidden file"
    return None


def normal_member_name(name: str) -> str:
    """An archive member name with ``/`` separators and no empty or ``.`` parts."""
    parts = name.replace("\\", "/").split("/")
    return "/".join(part for part in parts if part not in ("", "."))


def unsafe_member_name(name: str) -> bool:
    """True for archive names that would escape the extraction folder (zip slip)."""
    normal = name.replace("\\", "/")
    if normal.startswith("/") or re.match(r"^[A-Za-z]:", normal):
        return True
    return ".." in normal.split("/")


def open_source(path: Path | str, limits: Limits) -> Source:
    """List what ``path`` holds, refusing what is unsafe; raises SourceError if unreadable."""
    path = Path(path)
    if not path.exists():
        raise SourceError(path, "no such file or folder")
    if path.is_dir():
        return _list_folder(path, limits)
    lowered = path.name.lower()
    if lowered.endswith(".zip"):
        return _list_zip(path, limits)
    if lowered.endswith((".tar", ".tar.gz", ".tgz")):
        return _list_tar(path, limits)
    if zipfile.is_zipfile(path):
        return _list_zip(path, limits)
    source = Source(path, "file")
    _add(source, path.name, "file", str(path), path.stat().st_size, limits)
    return source


def _add(source: Source, name: str, kind: str, ref: Any, size: int, limits: Limits) -> None:
    reason = junk_reason(name)
    if reason is not None:
        source.skipped_files.append((name, reason))
    elif size == 0:
        source.rejected.append((name, "zero-byte file"))
    elif size > limits.max_file_bytes:
        source.rejected.append(
            (name, f"file too large: {size:,} bytes (limit {limits.max_file_bytes:,})")
        )
    else:
        source.entries.append(Entry(name, kind, ref, size))


def _list_folder(path: Path, limits: Limits) -> Source:
    source = Source(path, "folder")
    try:
        walked = list(os.walk(path, onerror=_raise))
    except OSError as error:
        raise SourceError(path, f"cannot read the folder ({error.strerror})") from error
    for folder, subfolders, files in walked:
        subfolders.sort()
        for name in sorted(files):
            full = Path(folder) / name
            relative = full.relative_to(path).as_posix()
            try:
                status = full.stat()
            except OSError as error:
                source.rejected.append((relative, f"unreadable: {error.strerror}"))
                continue
            if not stat.S_ISREG(status.st_mode):
                source.rejected.append((relative, "not a regular file"))
                continue
            _add(source, relative, "file", str(full), status.st_size, limits)
    source.entries.sort(key=lambda entry: entry.path)
    return source


def _raise(error: OSError) -> None:
    raise error


class _ArchiveBomb(Exception):
    pass


def _check_total(path: Path, total: int, limits: Limits, ratio: bool = True) -> None:
    """Refuse an archive that expands past the size limit or, for a single compressed stream
    (.tar.gz), by more than the ratio limit. Zip members are compressed one by one and are
    checked one by one, so one bad member does not cost the good ones."""
    if total > limits.max_archive_bytes:
        raise _ArchiveBomb(
            f"archive bomb: expands to over {total:,} bytes (limit {limits.max_archive_bytes:,})"
        )
    compressed = max(path.stat().st_size, 1)
    if ratio and total > RATIO_CHECK_FLOOR and total / compressed > limits.max_archive_ratio:
        raise _ArchiveBomb(
            f"archive bomb: expands {total / compressed:,.0f} times "
            f"(limit {limits.max_archive_ratio:g})"
        )


def _unreadable(kind: str, path: Path, error: Exception) -> str:
    """Why an archive cannot be opened, in words (an empty file says so; no server path)."""
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            return f"not a readable {kind} archive: the file is empty (0 bytes)"
    detail = str(error).replace(str(path), path.name)
    return f"not a readable {kind} archive ({detail})"


def _list_zip(path: Path, limits: Limits) -> Source:
    source = Source(path, "zip")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise SourceError(path, _unreadable("zip", path, error)) from error
    try:
        _check_total(path, sum(info.file_size for info in infos), limits, ratio=False)
    except _ArchiveBomb as bomb:
        source.rejected.append((path.name, str(bomb)))
        return source
    for index, info in enumerate(infos):
        reason = _zip_member_problem(info, limits)
        if info.is_dir() and reason is None:
            continue
        if reason:
            source.rejected.append((info.filename, reason))
        else:
            member = ZipMember(
                index,
                info.header_offset,
                info.compress_size,
                info.file_size,
                info.compress_type,
                info.CRC,
            )
            _add(source, normal_member_name(info.filename), "zip", member, info.file_size, limits)
    source.entries.sort(key=lambda entry: entry.path)
    return source


def _zip_member_problem(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    if unsafe_member_name(info.filename):
        return "path traversal: the member name points outside the archive"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "link in archive: symbolic links are not imported"
    if info.flag_bits & 0x1:
        return "encrypted archive member"
    if (
        info.file_size > RATIO_CHECK_FLOOR
        and info.file_size / max(info.compress_size, 1) > limits.max_archive_ratio
    ):
        ratio = info.file_size / max(info.compress_size, 1)
        return f"archive bomb: the member expands {ratio:,.0f} times"
    return None


def _list_tar(path: Path, limits: Limits) -> Source:
    source = Source(path, "tar")
    total = 0
    try:
        with tarfile.open(path, "r:*") as archive:
            for position, member in enumerate(archive):
                total += member.size
                _check_total(path, total, limits)
                _add_tar_member(source, position, member, limits)
    except _ArchiveBomb as bomb:
        return Source(path, "tar", rejected=[(path.name, str(bomb))])
    except (tarfile.TarError, OSError, EOFError) as error:
        if not source.entries:
            raise SourceError(path, _unreadable("tar", path, error)) from error
        source.rejected.append((path.name, f"damaged archive: stopped reading at {error}"))
    return source  # in stream order, the order tasks() reads them


def _add_tar_member(source: Source, position: int, member: tarfile.TarInfo, limits) -> None:
    if member.isdir():
        return
    if unsafe_member_name(member.name):
        source.rejected.append(
            (member.name, "path traversal: the member name points outside the archive")
        )
    elif member.issym() or member.islnk():
        source.rejected.append((member.name, "link in archive: links are not imported"))
    elif not member.isfile():
        source.rejected.append((member.name, "not a regular file"))
    else:
        _add(source, normal_member_name(member.name), "tar", position, member.size, limits)
