"""Pixels for the model from this instance: the cache of a size, filled from the stored originals.

:mod:`.pixel_cache` is the file format (pure, no app); this module is its use inside the app:
which cache belongs to the instance, and building the rows that are missing or stale in the
import's worker processes (the same decoding as the import), so every reader gets pixels with
one call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flask import current_app
from sqlalchemy import select

from model.crops import InputMode, NativeImages

from ...extensions import db
from ...models import Image
from ..storage import blob_path, blob_path_under, extension_for, instance_root
from .pixel_cache import PixelCache, cache_dir_under
from .worker import WorkerSettings, rebuild_chunk, run_ordered


def cache_for(size: int) -> PixelCache:
    """The cache of ``size`` in the current app's instance folder."""

    return PixelCache(instance_root(), size)


def cached_sizes() -> list[int]:
    """The sizes the instance holds a cache of (one ``pixels-<size>.u8`` each)."""
    folder = cache_dir_under(instance_root())
    names = (path.stem.removeprefix("pixels-") for path in folder.glob("pixels-*.u8"))
    return sorted(int(name) for name in names if name.isdigit())


def _hashes_of(image_ids: Sequence[int]) -> list[str]:
    """SHA-256 of each id (in order); unknown ids raise KeyError."""

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


def native_images(image_ids: Sequence[int], mode: InputMode) -> NativeImages:
    """The stored originals of ``image_ids`` as ``model.crops.NativeImages`` for a version
    trained on crops: decoded on access at the mode's scale, so no copy has to fit in memory."""
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


def pixels_for_input(mode: InputMode, image_ids: Sequence[int]):
    """What a network of input mode ``mode`` (``model.crops.InputMode``) reads for
    ``image_ids``: the cache at its size (``resize``), or the originals (``crops``)."""
    if mode.crops:
        return native_images(image_ids, mode)
    return load_pixels(image_ids, mode.crop_size)


def pixels_for(meta: dict, image_ids: Sequence[int]):
    """What the network of checkpoint ``meta`` reads for ``image_ids`` (its recorded input
    mode; checkpoints from before input modes resize)."""
    return pixels_for_input(InputMode.from_meta(meta), image_ids)
