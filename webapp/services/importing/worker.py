"""The part of an import that runs in worker processes: read, hash, check, decode, store.

Each file is read once; its bytes are hashed, decoded once (JPEG with ``draft`` to the smallest
DCT scale that still serves both the pixel cache and the thumbnail), and from that one decode come
the metadata, the thumbnail and the cache pixels. The original and the thumbnail are written here,
atomically, so only small results travel back to the main process, which owns the database.

:func:`run_ordered` runs a chunk function over a pool of processes with a bounded window of chunks
in flight and yields results in submission order.

(Over 400 lines: everything that runs inside a worker process, with no app context, is here,
in one module.)
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import re
import signal
import threading
import time
import warnings
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from model.images import load_for_model, resize_for_model, to_rgb

from ..evidence import safe_compute
from ..evidence.jpeg_quality import estimate_quality
from ..storage import EXTENSIONS, blob_relative, temporary_dir_under, thumbnail_relative
from .sources import DamagedMember, UnsupportedCompression, read_zip_member

THUMBNAIL_QUALITY = 85
# Default for MAX_IMAGE_FILE_BYTES: no real photograph comes near it.
MAX_FILE_BYTES = 512 * 1024**2
# Signatures of formats Pillow can read: a file that starts like one but cannot be opened is
# a damaged image, not "not an image".
SIGNATURES = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)
# Image formats we recognise but do not import (no decoder here, or not a raster photo format).
KNOWN_UNSUPPORTED_SUFFIXES = {
    ".heic": "HEIC",
    ".heif": "HEIF",
    ".avif": "AVIF",
    ".jxl": "JPEG XL",
    ".svg": "SVG",
    ".psd": "PSD",
    ".dng": "DNG",
    ".cr2": "CR2",
    ".nef": "NEF",
    ".arw": "ARW",
    ".raw": "RAW",
    ".jp2": "JPEG 2000",
}
# ISO base media files ("ftyp" box first) that hold still images.
ISO_MEDIA_BRANDS = {
    b"ftypheic": "HEIC",
    b"ftypheix": "HEIC",
    b"ftypmif1": "HEIF",
    b"ftypavif": "AVIF",
}
EXIF_FIELDS = ((271, "make"), (272, "model"), (305, "software"), (306, "datetime"))
EXIF_IFD = 0x8769
EXIF_DATETIME_ORIGINAL = 36867


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to know; picklable, so it can cross to a forkserver child."""

    root: str
    cache_size: int
    thumbnail_size: int
    max_pixels: int
    max_side: int
    max_aspect: float
    max_file_bytes: int
    archive: str | None = None
    evidence: bool = True  # read credentials, metadata, watermark and perceptual hash

    @classmethod
    def from_config(cls, config, root, cache_size: int, archive: str | None = None):
        """Settings from the app's configuration (``MAX_IMAGE_*``, ``THUMBNAIL_SIZE``)."""
        return cls(
            root=str(root),
            cache_size=cache_size,
            thumbnail_size=config["THUMBNAIL_SIZE"],
            max_pixels=config["MAX_IMAGE_PIXELS"],
            max_side=config["MAX_IMAGE_SIDE"],
            max_aspect=config.get("MAX_IMAGE_ASPECT", 50.0),
            max_file_bytes=config.get("MAX_IMAGE_FILE_BYTES", MAX_FILE_BYTES),
            archive=archive,
            evidence=bool(config.get("EVIDENCE_AT_IMPORT", True)),
        )


@dataclass
class Outcome:
    """What became of one file. ``stored``: its thumbnail already existed, so it was not
    decoded again (the main process decides whether that is enough)."""

    index: int
    sha256: str | None = None
    reason: str | None = None
    stored: bool = False
    meta: dict[str, Any] | None = None
    pixels: np.ndarray | None = None


class Rejected(Exception):
    """A file that cannot be imported; the message is the reason shown to the user."""


_settings: WorkerSettings | None = None
_archive: BinaryIO | None = None  # the zip being imported, open for reading
_store: _Store | None = None
_in_process = threading.Lock()


def initialize(settings: WorkerSettings, in_worker: bool = True) -> None:
    """Set up a worker: limits, and its own handle on the zip archive being imported (a file
    offset must not be shared between processes)."""
    global _settings, _archive, _store
    if in_worker:
        # Ctrl-C reaches the whole process group; the main process handles it and stops us.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _exit_with_parent()
    _settings = settings
    PILImage.MAX_IMAGE_PIXELS = settings.max_pixels
    _archive = open(settings.archive, "rb") if settings.archive else None  # noqa: SIM115
    _store = _Store(settings.root)


def _exit_with_parent() -> None:
    """A worker whose parent was killed (kill -9) would wait for work forever: leave instead."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def finalize() -> None:
    """Close what :func:`initialize` opened (used when running in the main process)."""
    global _archive
    if _archive is not None:
        _archive.close()
        _archive = None


# --- Reading --------------------------------------------------------------------------------


def _read(kind: str, ref: Any) -> bytes:
    if kind == "bytes":
        return ref
    if kind == "file":
        with open(ref, "rb") as handle:
            # Check the size first: read(limit) would reserve the whole limit in memory.
            size = os.fstat(handle.fileno()).st_size
            if size > _settings.max_file_bytes:
                raise Rejected(f"file too large: {size:,} bytes")
            return handle.read()
    if kind == "zip":
        try:
            return read_zip_member(_archive, ref)
        except DamagedMember as error:
            raise Rejected(f"damaged archive member: {error}") from error
        except UnsupportedCompression:
            return _read_with_zipfile(ref.index)
    raise ValueError(f"unknown source kind {kind!r}")


def _read_with_zipfile(index: int) -> bytes:
    """Members compressed with bzip2 or LZMA: rare, so the full zipfile reader is fine."""
    try:
        with (
            zipfile.ZipFile(_settings.archive) as archive,
            archive.open(archive.infolist()[index]) as member,
        ):
            return member.read()  # its declared size was checked when listing
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError) as error:
        raise Rejected(f"unreadable archive member: {error}") from error


def _unidentified_reason(data: bytes, name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in KNOWN_UNSUPPORTED_SUFFIXES:
        return f"unsupported format: {KNOWN_UNSUPPORTED_SUFFIXES[suffix]} (no decoder installed)"
    brand = ISO_MEDIA_BRANDS.get(data[4:12])
    if brand:
        return f"unsupported format: {brand} (no decoder installed)"
    if data.startswith(SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return "truncated image: the header is incomplete"
    return "not an image"


def _bomb_reason(error: Exception) -> str:
    claimed = re.search(r"\((\d+) pixels\)", str(error))
    pixels = f"{int(claimed.group(1)):,} pixels" if claimed else str(error)
    return f"decompression bomb: {pixels} (limit {_settings.max_pixels:,})"


def _damage_reason(error: Exception) -> str:
    message = str(error) or type(error).__name__
    lowered = message.lower()
    if any(word in lowered for word in ("truncat", "end of file", "premature", "eof")):
        return f"truncated image: {message}"
    return f"damaged image: {message}"


# --- Decoding -------------------------------------------------------------------------------


def _check_dimensions(width: int, height: int) -> None:
    pixels = width * height
    if pixels > _settings.max_pixels:
        raise Rejected(
            f"decompression bomb: {width}x{height} = {pixels:,} pixels "
            f"(limit {_settings.max_pixels:,})"
        )
    if min(width, height) < 1 or max(width, height) > _settings.max_side:
        raise Rejected(f"absurd dimensions: {width}x{height} (side limit {_settings.max_side})")
    if max(width, height) / min(width, height) > _settings.max_aspect:
        raise Rejected(
            f"absurd dimensions: {width}x{height} (aspect ratio over {_settings.max_aspect:g}:1)"
        )


def thumbnail_dimensions(width: int, height: int, longest: int) -> tuple[int, int]:
    """Thumbnail size with the long side ``longest`` (never upscaled)."""
    if max(width, height) <= longest:
        return width, height
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _clean_exif_value(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\x00", "").strip()[:100]


def _exif(image: PILImage.Image) -> tuple[bool, dict[str, str] | None]:
    """Whether the file carries EXIF, and a small summary (camera, software, dates)."""
    if image.format == "TIFF":
        exif = image.getexif()
        present = EXIF_IFD in exif or 271 in exif or 272 in exif
    else:
        present = bool(image.info.get("exif"))
        exif = image.getexif() if present else None
    if not present:
        return False, None
    summary = {}
    for tag, name in EXIF_FIELDS:
        if exif.get(tag):
            summary[name] = _clean_exif_value(exif[tag])
    try:
        original = exif.get_ifd(EXIF_IFD).get(EXIF_DATETIME_ORIGINAL)
    except Exception:  # a damaged EXIF block must not reject a good image
        original = None
    if original:
        summary["datetime_original"] = _clean_exif_value(original)
    return True, summary


def _thumbnail_jpeg(image: PILImage.Image, size: tuple[int, int]) -> bytes:
    width, height = image.size
    factor = width // size[0]
    if image.size == size:
        thumbnail = image
    elif factor > 1 and (width, height) == (size[0] * factor, size[1] * factor):
        thumbnail = image.reduce(factor)  # exact integer ratio: a box filter is all it takes
    else:
        thumbnail = image.resize(size, PILImage.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def decode(data: bytes, name: str) -> tuple[dict[str, Any], np.ndarray, bytes | None]:
    """Check and decode one file: its metadata, cache pixels and thumbnail JPEG (None when
    the file is a JPEG no larger than a thumbnail, which serves as its own)."""
    with warnings.catch_warnings():
        # Pillow warns about odd files (bombs, corrupt EXIF, palette transparency): the checks
        # here turn what matters into rejections, and a warning per file helps nobody.
        warnings.simplefilter("ignore")
        try:
            image = PILImage.open(io.BytesIO(data))
        except PILImage.DecompressionBombError as error:
            raise Rejected(_bomb_reason(error)) from error
        except UnidentifiedImageError as error:
            raise Rejected(_unidentified_reason(data, name)) from error
        except Exception as error:  # Pillow raises many kinds on hostile headers
            raise Rejected(_damage_reason(error)) from error
        with image:
            return _decode_opened(image)


def _decode_opened(image: PILImage.Image) -> tuple[dict[str, Any], np.ndarray, bytes | None]:
    image_format = "JPEG" if image.format == "MPO" else image.format
    if image_format not in EXTENSIONS:
        raise Rejected(f"unsupported format: {image.format}")
    width, height = image.size
    _check_dimensions(width, height)
    meta = {"format": image_format, "width": width, "height": height, "mode": image.mode}
    try:
        meta["has_exif"], meta["exif_summary"] = _exif(image)
        meta["jpeg_quality"] = (
            estimate_quality(image.quantization) if image_format == "JPEG" else None
        )
        thumb_size = thumbnail_dimensions(width, height, _settings.thumbnail_size)
        if image_format == "JPEG":
            cache = _settings.cache_size
            image.draft("RGB", (max(cache, thumb_size[0]), max(cache, thumb_size[1])))
        image.load()
    except Exception as error:  # truncated data surfaces here, as OSError and friends
        raise Rejected(_damage_reason(error)) from error
    try:
        rgb = to_rgb(image)
    except Exception as error:
        raise Rejected(f"unsupported colour mode: {image.mode} ({error})") from error
    pixels = resize_for_model(rgb, _settings.cache_size)
    if image_format == "JPEG" and thumb_size == (width, height) and meta["mode"] in ("RGB", "L"):
        return meta, pixels, None  # small enough: the original is its own thumbnail
    return meta, pixels, _thumbnail_jpeg(rgb, thumb_size)


class _Store:
    """Atomic writes into the store from one worker process, with as few system calls as
    possible: folders are created once per process, names are built as strings."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.temporary = str(temporary_dir_under(root))
        os.makedirs(self.temporary, exist_ok=True)
        self.folders: set[str] = set()
        self.counter = 0

    def _folder(self, path: str) -> None:
        folder = os.path.dirname(path)
        if folder not in self.folders:
            os.makedirs(folder, exist_ok=True)
            self.folders.add(folder)

    def write(self, path: str, data: bytes) -> None:
        """Write to a temporary file, then rename into place: all or nothing."""
        self.counter += 1
        temporary = f"{self.temporary}/{os.getpid()}-{self.counter}.part"
        with open(temporary, "wb") as handle:
            handle.write(data)
        self._folder(path)
        os.replace(temporary, path)

    def link(self, source: str, path: str) -> bool:
        """Make ``path`` another name for ``source`` (atomic); False if links are unsupported."""
        self._folder(path)
        try:
            os.link(source, path)
        except FileExistsError:
            pass
        except OSError:
            return False
        return True

    def thumbnail(self, sha256: str) -> str:
        return f"{self.root}/{thumbnail_relative(sha256)}"

    def save(self, sha256: str, meta: dict, data: bytes, thumbnail: bytes | None) -> None:
        """Original first, thumbnail second: a thumbnail on disk means both are complete.
        ``thumbnail`` None: the original is a JPEG small enough to be its own thumbnail."""
        original = f"{self.root}/{blob_relative(sha256, EXTENSIONS[meta['format']])}"
        if not os.path.exists(original):
            self.write(original, data)
        if thumbnail is None and self.link(original, self.thumbnail(sha256)):
            return
        self.write(self.thumbnail(sha256), thumbnail or _encode_thumbnail_of(data))


def _encode_thumbnail_of(data: bytes) -> bytes:
    with PILImage.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        to_rgb(image).save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
        return buffer.getvalue()


def process_one(index: int, kind: str, ref: Any, name: str, force: bool) -> Outcome:
    """Read, hash, check, decode and store one file."""
    try:
        data = _read(kind, ref)
        if not data:
            raise Rejected("zero-byte file")
        if len(data) > _settings.max_file_bytes:
            raise Rejected(f"file too large: over {_settings.max_file_bytes:,} bytes")
        sha256 = hashlib.sha256(data).hexdigest()
        if not force and os.path.exists(_store.thumbnail(sha256)):
            return Outcome(index, sha256, stored=True)
        meta, pixels, thumbnail = decode(data, name)
        meta["bytes"] = len(data)
        if _settings.evidence:
            meta["evidence"] = safe_compute(data)
        _store.save(sha256, meta, data, thumbnail)
        return Outcome(index, sha256, meta=meta, pixels=pixels)
    except Rejected as rejection:
        return Outcome(index, reason=str(rejection))
    except OSError as error:
        return Outcome(index, reason=f"unreadable: {error.strerror or error}")


def process_chunk(tasks: list[tuple[int, str, Any, str, bool]]) -> list[Outcome]:
    """Run :func:`process_one` over a chunk of (index, kind, ref, name, force) tasks."""
    return [process_one(*task) for task in tasks]


def rebuild_chunk(tasks: list[tuple[int, str]]) -> list[tuple[int, np.ndarray | None, str]]:
    """Cache pixels from stored originals: (image id, path) -> (image id, pixels, error)."""
    results = []
    size = _settings.cache_size
    for image_id, path in tasks:
        try:
            results.append((image_id, load_for_model(path, size), ""))
        except Exception as error:  # reported per image; one bad original must not stop the rest
            results.append((image_id, None, f"{type(error).__name__}: {error}"))
    return results


# --- The pool -------------------------------------------------------------------------------


def _context() -> multiprocessing.context.BaseContext:
    """``fork`` when this process has one thread (cheap: the CLI, scripts); ``forkserver`` when
    other threads run (the job worker, a web server), where forking could copy a held lock."""
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def run_ordered(
    function: Callable[[list], list],
    chunks: Iterable[list],
    settings: WorkerSettings,
    workers: int,
    window: int | None = None,
) -> Iterator[list]:
    """Yield ``function(chunk)`` for each chunk, in order, computed by ``workers`` processes.

    At most ``window`` chunks are in flight, so a lazy ``chunks`` (a tar stream) is read only as
    fast as it is consumed. With ``workers <= 1`` everything runs in this process.
    """
    if workers <= 1:
        # The worker state is per process: two threads importing in-process take turns.
        with _in_process:
            initialize(settings, in_worker=False)
            try:
                for chunk in chunks:
                    yield function(chunk)
            finally:
                finalize()
        return
    window = window or 3 * workers
    executor = ProcessPoolExecutor(
        workers, mp_context=_context(), initializer=initialize, initargs=(settings,)
    )
    pending: deque = deque()
    try:
        for chunk in chunks:
            pending.append(executor.submit(function, chunk))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
