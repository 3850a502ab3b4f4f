"""The pre-resized uint8 pixel cache the model reads instead of decoding originals.

One pair of files per square size under ``instance/cache/``:

- ``pixels-<size>.u8``: row ``image.id`` holds ``size * size * 3`` RGB bytes;
- ``pixels-<size>.tag``: row ``image.id`` holds the first 8 bytes of the image's SHA-256.

A row counts only when its tag matches the image's hash in the database. Writers write the pixels
first and the tag second, with ``pwrite`` at fixed offsets, so concurrent importers never touch
each other's rows, and a row left half-written by a killed import (or written for an image id that
a rolled-back transaction later hands to another image) simply fails the check and is rebuilt from
the stored original. Nothing needs a lock or a repair step.

:func:`model.images.resize_for_model` is the one preprocessing from decoded image to square uint8
pixels; the cache is built with it (and :func:`model.images.load_for_model` gives a file's row).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

TAG_BYTES = 8


def tag_of(sha256: str) -> bytes:
    """The row tag of an image: the first 8 bytes of its SHA-256."""
    return bytes.fromhex(sha256[: 2 * TAG_BYTES])


def cache_dir_under(root: Path | str) -> Path:
    """The cache folder under the instance folder ``root``."""
    return Path(root) / "cache"


class PixelCache:
    """The cache files of one size; safe to use from several processes at once."""

    def __init__(self, root: Path | str, size: int) -> None:
        self.size = size
        self.row_bytes = size * size * 3
        folder = cache_dir_under(root)
        self.pixels_file = folder / f"pixels-{size}.u8"
        self.tags_file = folder / f"pixels-{size}.tag"

    def write(self, ids: Sequence[int], sha256s: Sequence[str], pixels: Iterable) -> None:
        """Store rows: all pixels first, then their tags, so a torn batch stays invalid."""
        self.pixels_file.parent.mkdir(parents=True, exist_ok=True)
        pixel_fd = os.open(self.pixels_file, os.O_RDWR | os.O_CREAT, 0o644)
        tag_fd = os.open(self.tags_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            for image_id, row in zip(ids, pixels, strict=True):
                data = np.ascontiguousarray(row, dtype=np.uint8).data
                if data.nbytes != self.row_bytes:
                    raise ValueError(f"row of {data.nbytes} bytes, expected {self.row_bytes}")
                os.pwrite(pixel_fd, data, image_id * self.row_bytes)
            for image_id, sha256 in zip(ids, sha256s, strict=True):
                os.pwrite(tag_fd, tag_of(sha256), image_id * TAG_BYTES)
        finally:
            os.close(pixel_fd)
            os.close(tag_fd)

    def valid(self, ids: Sequence[int], sha256s: Sequence[str]) -> np.ndarray:
        """A boolean per id: does the cache hold this image's pixels?"""
        ids_array = np.asarray(ids, dtype=np.int64)
        result = np.zeros(len(ids_array), dtype=bool)
        if not len(ids_array) or not self.tags_file.exists():
            return result
        tag_rows = self.tags_file.stat().st_size // TAG_BYTES
        rows_present = min(tag_rows, self._rows_on_disk())
        if rows_present == 0:
            return result
        stored = np.memmap(self.tags_file, dtype=f"S{TAG_BYTES}", mode="r", shape=(tag_rows,))
        inside = ids_array < rows_present
        expected = np.array([tag_of(sha) for sha in sha256s], dtype=f"S{TAG_BYTES}")
        result[inside] = stored[ids_array[inside]] == expected[inside]
        return result

    def clear(self, ids: Sequence[int]) -> int:
        """Forget the rows of ``ids`` (deleted images): tag first, so a torn clear leaves the
        row invalid, then the pixels zeroed. Returns how many rows on disk were cleared."""
        rows = self._rows_on_disk()
        inside = sorted(int(i) for i in set(ids) if 0 <= int(i) < rows)
        if not inside or not self.tags_file.exists():
            return 0  # without tags no row is valid; pixels alone are never read
        with open(self.tags_file, "r+b") as tags, open(self.pixels_file, "r+b") as pixels:
            tag_rows = os.fstat(tags.fileno()).st_size // TAG_BYTES
            for image_id in inside:
                if image_id < tag_rows:
                    os.pwrite(tags.fileno(), bytes(TAG_BYTES), image_id * TAG_BYTES)
            blank = bytes(self.row_bytes)
            for image_id in inside:
                os.pwrite(pixels.fileno(), blank, image_id * self.row_bytes)
        return len(inside)

    def _rows_on_disk(self) -> int:
        if not self.pixels_file.exists():
            return 0
        return self.pixels_file.stat().st_size // self.row_bytes

    def array(self) -> np.ndarray:
        """A read-only memory map of every row on disk, shape (rows, size, size, 3)."""
        rows = self._rows_on_disk()
        if rows == 0:
            return np.zeros((0, self.size, self.size, 3), dtype=np.uint8)
        return np.memmap(
            self.pixels_file, dtype=np.uint8, mode="r", shape=(rows, self.size, self.size, 3)
        )

    def read(self, ids: Sequence[int]) -> np.ndarray:
        """Copy the rows of ``ids`` (in that order); the caller has checked they are valid."""
        return np.array(self.array()[np.asarray(ids, dtype=np.int64)])


# --- Functions for the app (need an application context) -------------------------------------


def cache_for(size: int) -> PixelCache:
    """The cache of ``size`` in the current app's instance folder."""
    from .storage import instance_root

    return PixelCache(instance_root(), size)


def cached_sizes() -> list[int]:
    """The sizes the instance holds a cache of (one ``pixels-<size>.u8`` each)."""
    from .storage import instance_root

    folder = cache_dir_under(instance_root())
    names = (path.stem.removeprefix("pixels-") for path in folder.glob("pixels-*.u8"))
    return sorted(int(name) for name in names if name.isdigit())


def _hashes_of(image_ids: Sequence[int]) -> list[str]:
    """SHA-256 of each id (in order); unknown ids raise KeyError."""
    from sqlalchemy import select

    from ..extensions import db
    from ..models import Image

    unique = sorted(set(int(i) for i in image_ids))
    found: dict[int, str] = {}
    for start in range(0, len(unique), 5000):
        chunk = unique[start : start + 5000]
        found.update(
            db.session.execute(select(Image.id, Image.sha256).where(Image.id.in_(chunk))).all()
        )
    missing = [i for i in unique if i not in found]
    if missing:
        raise KeyError(f"no image with id {missing[:10]}")
    return [found[int(i)] for i in image_ids]


def ensure_cache(image_ids: Sequence[int], size: int, workers: int | None = None) -> int:
    """Make sure the cache of ``size`` holds every image in ``image_ids``.

    Rows that are missing or stale are built from the stored originals in worker processes
    (the same decoding as the import). Returns how many rows were built.
    """
    ids = sorted(set(int(i) for i in image_ids))
    cache = cache_for(size)
    hashes = _hashes_of(ids)
    ok = cache.valid(ids, hashes)
    todo = [image_id for image_id, valid in zip(ids, ok, strict=True) if not valid]
    if todo:
        _rebuild(
            cache, todo, [h for h, valid in zip(hashes, ok, strict=True) if not valid], workers
        )
    return len(todo)


def _rebuild(cache: PixelCache, ids: list[int], hashes: list[str], workers: int | None) -> None:
    """Decode the stored originals of ``ids`` into the cache, in worker processes."""
    from flask import current_app
    from sqlalchemy import select

    from ..extensions import db
    from ..models import Image
    from .importer_worker import WorkerSettings, rebuild_chunk, run_ordered
    from .storage import blob_path_under, extension_for, instance_root

    config = current_app.config
    root = instance_root()
    formats = {}
    for start in range(0, len(ids), 5000):
        chunk_ids = ids[start : start + 5000]
        statement = select(Image.id, Image.format).where(Image.id.in_(chunk_ids))
        formats.update(db.session.execute(statement).all())
    tasks = [
        (image_id, str(blob_path_under(root, sha, extension_for(formats[image_id]))))
        for image_id, sha in zip(ids, hashes, strict=True)
    ]
    settings = WorkerSettings.from_config(config, root, cache.size)
    workers = workers or config["IMPORT_WORKERS"]
    if len(tasks) < 64:
        workers = 1
    chunk = max(1, min(256, len(tasks) // (workers * 8)))
    chunks = [tasks[start : start + chunk] for start in range(0, len(tasks), chunk)]
    sha_of = dict(zip(ids, hashes, strict=True))
    failures = []
    for results in run_ordered(rebuild_chunk, chunks, settings, workers):
        good = [(image_id, pixels) for image_id, pixels, _ in results if pixels is not None]
        failures += [(image_id, error) for image_id, pixels, error in results if pixels is None]
        if good:
            cache.write([i for i, _ in good], [sha_of[i] for i, _ in good], [p for _, p in good])
    if failures:
        raise CacheError(f"{len(failures)} original(s) could not be decoded: {failures[:5]}")


class CacheError(RuntimeError):
    """Some requested images have no usable original to build their cache rows from."""


def load_pixels(image_ids: Sequence[int], size: int) -> np.ndarray:
    """RGB uint8 pixels, shape (N, size, size, 3), for ``image_ids`` in the order given."""
    ensure_cache(image_ids, size)
    return cache_for(size).read(image_ids)


def open_cache(size: int, image_ids: Sequence[int] | None = None) -> np.ndarray:
    """A read-only memory map over the whole cache of ``size`` (row = image id), for readers
    that want batches without copies; pass ``image_ids`` to build their rows first."""
    if image_ids is not None:
        ensure_cache(image_ids, size)
    return cache_for(size).array()


# --- What a version's network reads: the cache, or native pixels for crops ------------------


def native_images(image_ids: Sequence[int], mode):
    """The stored originals of ``image_ids`` as ``model.crops.NativeImages`` for a version
    trained on crops: decoded on access at the mode's scale, so no copy has to fit in memory."""
    from sqlalchemy import select

    from model.crops import NativeImages

    from ..extensions import db
    from ..models import Image
    from .storage import blob_path, extension_for

    ids = [int(i) for i in image_ids]
    rows = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        statement = select(Image.id, Image.sha256, Image.format).where(Image.id.in_(chunk))
        rows.update({row.id: row for row in db.session.execute(statement)})
    missing = [i for i in ids if i not in rows]
    if missing:
        raise KeyError(f"no image with id {missing[:10]}")
    paths = [blob_path(rows[i].sha256, extension_for(rows[i].format)) for i in ids]
    absent = [image_id for image_id, path in zip(ids, paths, strict=True) if not path.is_file()]
    if absent:
        raise CacheError(f"{len(absent)} original(s) are missing from storage: {absent[:5]}")
    return NativeImages([str(path) for path in paths], mode)


def pixels_for_input(mode, image_ids: Sequence[int]):
    """What a network of input mode ``mode`` (``model.crops.InputMode``) reads for
    ``image_ids``: the cache at its size (``resize``), or the originals (``crops``)."""
    if mode.crops:
        return native_images(image_ids, mode)
    return load_pixels(image_ids, mode.crop_size)


def pixels_for(meta: dict, image_ids: Sequence[int]):
    """What the network of checkpoint ``meta`` reads for ``image_ids`` (its recorded input
    mode; checkpoints from before input modes resize)."""
    from model.crops import InputMode

    return pixels_for_input(InputMode.from_meta(meta), image_ids)
