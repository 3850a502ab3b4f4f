"""What the desk derived from images and keeps outside their rows, removed when the images are
deleted (with their dataset).

Keyed by image id: the pixel-cache rows of every size, each version's stored penultimate
features (``features/<version>.npz``, read by head refits and out-of-distribution scores), its
out-of-fold scores (``models/<version>.oof.npz``) and its cached heatmaps
(``cache/heatmaps/<version>/<id>.png``). Ids can be handed out again (SQLite reuses the highest
free one), so a leftover would not only keep a deleted image's data: it would be read as the new
image's. The training-label records (``models/<version>.labels.npz``) stay: they say what a
version was trained on, and deleting an image does not undo its training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flask import current_app

from ..importing.pixels import cache_for, cached_sizes
from ..records import versions
from ..review import heatmaps


@dataclass(frozen=True)
class Removed:
    """How much of the deleted images' derived data went, by kind."""

    cache_rows: int
    feature_rows: int
    heatmaps: int


def purge(image_ids: Sequence[int]) -> Removed:
    """Remove every derived row and file of ``image_ids`` (already deleted from the database)."""
    ids = np.unique(np.asarray(image_ids, dtype=np.int64))
    if not ids.size:
        return Removed(0, 0, 0)
    cache_rows = sum(cache_for(size).clear(ids.tolist()) for size in cached_sizes())
    instance = Path(current_app.instance_path)
    stored = [*(instance / "features").glob("*.npz"), *versions.models_dir().glob("*.oof.npz")]
    feature_rows = sum(_drop_rows(path, ids) for path in stored)
    return Removed(cache_rows, feature_rows, _remove_heatmaps(ids.tolist()))


def _drop_rows(path: Path, ids: np.ndarray) -> int:
    """Rewrite an ``ids``-indexed array file without the rows of ``ids`` (moved into place
    whole, so a reader sees the old file or the new one); returns how many rows went."""
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    if "ids" not in arrays:
        return 0
    keep = ~np.isin(arrays["ids"], ids)
    dropped = int((~keep).sum())
    if dropped:
        rows = len(arrays["ids"])
        kept = {k: v[keep] if len(v) == rows else v for k, v in arrays.items()}
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "wb") as handle:
            np.savez(handle, **kept)
        os.replace(temporary, path)
    return dropped


def _remove_heatmaps(ids: list[int]) -> int:
    """Unlink the cached heatmaps of ``ids`` under every version; returns how many."""
    root = heatmaps.heatmaps_root()
    doomed = {f"{image_id}.png" for image_id in ids}
    removed = 0
    for folder in (path for path in root.glob("*") if path.is_dir()) if root.exists() else []:
        for path in folder.iterdir():
            if path.name in doomed:
                with suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed
